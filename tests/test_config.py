"""Configuration from arguments, mappings and ``CDPTRACK_*`` variables; keys never shown."""

from __future__ import annotations

import signal

import pytest

from cdptrack.config import Config, ConfigError, Secret


def test_destinations_are_on_when_their_credentials_are_set() -> None:
    assert Config().enabled() == ()
    config = Config.from_env({"CDPTRACK_YESPO_SITE_ID": "S", "CDPTRACK_CUSTOMERIO_API_KEY": "k"})
    assert config.enabled() == ("yespo_tracker", "customerio")
    full = Config.from_env({"CDPTRACK_YESPO_SITE_ID": "S", "CDPTRACK_YESPO_API_KEY": "a",
                            "CDPTRACK_CUSTOMERIO_API_KEY": "b",
                            "CDPTRACK_ORANGEPILL_API_KEY": "c"})
    assert full.enabled() == ("yespo_tracker", "yespo_events", "customerio", "orangepill")


def test_environment_names_from_the_design() -> None:
    config = Config.from_env({
        "CDPTRACK_CUSTOMERIO_REGION": "EU",
        "CDPTRACK_YESPO_TRACKER_URL": "http://127.0.0.1:9000/t/",
        "CDPTRACK_YESPO_API_URL": "https://proxy.example/yespo/api/v1",
        "CDPTRACK_CUSTOMERIO_URL": "http://localhost:9000/cio/v1",
        "CDPTRACK_ORANGEPILL_URL": "http://[::1]:9000/op/v1",
        "CDPTRACK_OUTBOX": "sqlite:///tmp/outbox.db",
        "CDPTRACK_DRY_RUN": "true",
    })
    assert config.customerio_region == "eu"
    assert config.yespo_tracker_url == "http://127.0.0.1:9000/t"
    assert config.customerio_base_url == "http://localhost:9000/cio/v1"
    assert config.outbox == "sqlite:///tmp/outbox.db"
    assert config.dry_run is True
    assert Config(customerio_region="eu").customerio_base_url == "https://cdp-eu.customer.io/v1"
    assert Config(customerio_region="EU").customerio_region == "eu"  # type: ignore[arg-type]


def test_arguments_win_over_the_environment() -> None:
    config = Config.from_env({"CDPTRACK_YESPO_SITE_ID": "ENV"}, yespo_site_id="ARG")
    assert config.yespo_site_id == "ARG"


@pytest.mark.parametrize("url", ["http://tracker.yespo.io/api/v2", "http://10.0.0.5/x",
                                 "ftp://127.0.0.1/x", "https://user:pw@host.example/x"])
def test_plain_http_only_for_loopback_and_no_credentials_in_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        Config(yespo_tracker_url=url)


def test_bad_region_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="customerio_region"):
        Config.from_env({"CDPTRACK_CUSTOMERIO_REGION": "apac"})


def test_keys_never_show_in_repr_str_or_describe() -> None:
    config = Config(yespo_api_key="yespo-SECRET", customerio_api_key="cio-SECRET",
                    orangepill_api_key="op-SECRET")
    for text in (repr(config), str(config), str(config.describe())):
        assert "SECRET" not in text
    assert isinstance(config.customerio_api_key, Secret)
    assert config.customerio_api_key.reveal() == "cio-SECRET"
    assert set(config.secrets()) == {"yespo-SECRET", "cio-SECRET", "op-SECRET"}


def test_describe_masks_a_password_in_the_outbox_url() -> None:
    config = Config(outbox="redis://worker:hunter2@127.0.0.1:6379/0")
    assert config.describe()["outbox"] == "redis://worker:***@127.0.0.1:6379/0"
    assert "hunter2" not in repr(config.describe()) + repr(config) + str(config)
    assert Config(outbox="sqlite:///x.db").describe()["outbox"] == "sqlite:///x.db"


def test_the_shutdown_budget_and_signal_handling_come_from_the_environment() -> None:
    from cdptrack import shutdown_hooks
    from cdptrack.tracker import Tracker

    config = Config.from_env({"CDPTRACK_FLUSH_AT_EXIT": " 2.5 ",
                              "CDPTRACK_HANDLE_SIGNALS": "off"})
    assert (config.flush_at_exit, config.handle_signals) == (2.5, False)
    assert Config().flush_at_exit == 5.0 and Config().handle_signals is True
    shutdown_hooks.uninstall()
    try:
        tracker = Tracker(config)
        assert tracker.shutdown_budget == 2.5
        assert not shutdown_hooks.installed(signal.SIGTERM)
        assert Tracker(config, flush_at_exit=0.5).shutdown_budget == 0.5  # argument wins
        Tracker(Config.from_env({"CDPTRACK_HANDLE_SIGNALS": "yes"}))
        assert shutdown_hooks.installed(signal.SIGTERM)
    finally:
        shutdown_hooks.uninstall()


@pytest.mark.parametrize(("name", "value"), [
    ("CDPTRACK_FLUSH_AT_EXIT", "five"), ("CDPTRACK_FLUSH_AT_EXIT", "-1"),
    ("CDPTRACK_FLUSH_AT_EXIT", "nan"), ("CDPTRACK_HANDLE_SIGNALS", "nope"),
])
def test_a_bad_shutdown_setting_is_a_config_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.removeprefix("CDPTRACK_").lower()
                       + "|" + name):
        Config.from_env({name: value})


def test_flask_settings_set_the_budget() -> None:
    from flask import Flask

    from cdptrack.integrations.flask import CDPTrack

    app = Flask(__name__)
    app.config.update(CDPTRACK_FLUSH_AT_EXIT=1.5, CDPTRACK_HANDLE_SIGNALS=False)
    CDPTrack(app)
    assert app.extensions["cdptrack"].tracker.shutdown_budget == 1.5
