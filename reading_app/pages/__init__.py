"""Pages of the TSCT reading workstation (Streamlit), one file per page, routed by ``app.py``.

Each page is a thin script over :mod:`reader_study` and :mod:`reading_app.workstation`; shared helpers are in
:mod:`reading_app.pages.common`, the slice viewer component in :mod:`reading_app.pages.viewer_component`.
"""
