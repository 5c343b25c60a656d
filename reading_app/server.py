"""The app server: Streamlit's ``st.App`` running ``app.py``, plus the workstation's HTTP routes.

``tsct app`` runs ``streamlit run reading_app/server.py``; Streamlit sees the ``st.App`` below and serves it
with uvicorn. Beside Streamlit's own routes it mounts (under ``server.baseUrlPath`` when set):

* ``/api/tsct/v1/image/…`` — slice images for the viewer, allowed by image tickets (the unaided
  reading never gets the subtraction or the z-map: the request is refused with 403);
* ``/api/tsct/v1/session/…`` — the log-in cookie, so a browser reload keeps the user logged in.

See :mod:`reading_app.workstation.http`.
"""

from pathlib import Path

import streamlit as st

from reading_app.workstation import make_routes

#: the Streamlit entry beside this package (in a checkout and when installed alike)
APP_SCRIPT = Path(__file__).resolve().parents[1] / "app.py"

app = st.App(str(APP_SCRIPT), routes=make_routes(st.get_option("server.baseUrlPath") or ""))
