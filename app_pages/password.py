"""Password page for a first log-in (the view is :func:`app_pages.auth_views.password_view`)."""

from app_pages.auth_views import password_view

password_view()
