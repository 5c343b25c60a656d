"""Log-in page (the view is :func:`reading_app.pages.auth_views.login_view`)."""

from reading_app.pages.auth_views import login_view

login_view()
