"""Password page for a first log-in (the view is :func:`reading_app.pages.auth_views.password_view`)."""

from reading_app.pages.auth_views import password_view

password_view()
