"""The reading app (Streamlit), beside its entry ``app.py``: three units, one per role.

* :mod:`reading_app.pages` — one Streamlit page per file (worklist, reading, studies, …) and the
  slice viewer component (``viewer.js``, ``viewer.css``);
* :mod:`reading_app.workstation` — the viewer's server-side logic: volumes, geometry, rendering,
  HU readout, image tickets, web sessions and the HTTP routes;
* :mod:`reading_app.server` — the server entry ``tsct app`` runs: Streamlit plus those routes.

Pages may import the workstation, never the reverse (``tests/test_architecture.py``).
"""
