"""TSCT reading workstation (Streamlit). Start it with ``tsct app``.

The reading, coordination and statistics pages arrive with the reader-study issue; until then
this page says what the platform is and where to start.
"""

import streamlit as st

st.set_page_config(page_title="TSCT reading workstation", layout="wide")
st.title("TSCT: temporal-subtraction CT reader studies")
st.markdown(
    "This workstation will host reading sessions (with and without the temporal-subtraction "
    "z-score overlay), study coordination and the JAFROC report. Generate a synthetic case set "
    "with `tsct demo` or `tsct cases synth` to start."
)
