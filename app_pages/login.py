"""Log-in page (the view is :func:`app_pages.auth_views.login_view`)."""

from app_pages.auth_views import login_view

login_view()
