"""Pages of the TSCT reading workstation (Streamlit), one file per page, routed by ``app.py``.

Each page is a thin script over :mod:`reader_study` and :mod:`workstation`; shared helpers are in
:mod:`app_pages.common`, the slice viewer component in :mod:`app_pages.viewer_component`.
"""
