"""The slice viewer as a Streamlit custom component (components v2: inline JavaScript, no build step).

:func:`slice_viewer` mounts it with a payload from :func:`reading_app.workstation.viewer_payload` and returns
the component's result; its one-shot events (``click``, ``rate``, ``cancel``, ``beat``) are handled
by the callbacks the caller passes (they run before the rerun, so the page reflects them at once).
The JavaScript and CSS live beside this file: ``viewer.js`` and ``viewer.css`` (the viewer), ``localizer.js``
and ``localizer.css`` (the localizer beside it), joined into the component's one module and style sheet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import streamlit as st

_HERE = Path(__file__).parent
_HTML = '<div class="tsct-viewer" tabindex="0" data-testid="tsct-viewer"></div>'

_component = st.components.v2.component(
    "tsct.slice_viewer",
    html=_HTML,
    css="\n".join((_HERE / name).read_text(encoding="utf-8") for name in ("viewer.css", "localizer.css")),
    js="\n".join((_HERE / name).read_text(encoding="utf-8") for name in ("localizer.js", "viewer.js")),
)

#: The viewer's events; each gets an ``on_<name>_change`` callback.
EVENTS = ("click", "rate", "cancel", "beat")


def slice_viewer(payload: dict[str, Any], *, key: str, callbacks: dict[str, Callable[[], None]]) -> Any:
    """Mount the viewer; ``callbacks`` maps each event in :data:`EVENTS` to a function called on it.

    Inside a callback, ``st.session_state[key][event]`` holds the event's value.
    """
    kwargs = {f"on_{name}_change": callbacks.get(name, _ignore) for name in EVENTS}
    return _component(data=payload, key=key, **kwargs)


def _ignore() -> None:
    return None
