"""A Django project read by ``cdptrack routes --django-settings djroutes.settings``:
nested ``include()``, ``i18n_patterns``, ``re_path``, a declared class-based view and a
route rule written with Django's converters."""
