"""P values and quantiles from scipy.special's compiled ufuncs, loaded without its ``__init__``.

``analysis.stats._distributions`` imports ``scipy.special._ufuncs`` alone (``_special``), which
saves about 0.25 s of CPU per ``tsct analyze st`` process; these tests check that the numbers are
bit-for-bit those of ``scipy.special`` and that SciPy works as usual afterwards, also when
several threads reach ``scipy.special`` first at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys, threading
from analysis.stats import _distributions as d

args = [(2.5, 4, 30.7), (0.3, 1, 7.0), (41.0, 3, 12.25), (1.7, 2, float("inf"))]
ours = {
    "f_sf": [d.f_sf(*a) for a in args],
    "chi2_sf": [d.chi2_sf(x, df) for x, df in [(3.1, 4), (0.01, 1), (60.0, 5)]],
    "t_p": [d.t_two_sided_p(t, df) for t, df in [(1.3, 11.2), (-4.2, 3.0), (0.2, 199.0), (2.0, None)]],
    "t_q": [d.t_quantile(p, df) for p, df in [(0.975, 7.3), (0.995, 36.79), (0.975, None)]],
    "power": [d.noncentral_f_power(3.0, 1, 20.5, 0.05), d.noncentral_f_power(2.0, 1, float("inf"), 0.05)],
}
deferred = "scipy._lib._array_api" not in sys.modules and "numpy.f2py" not in sys.modules

got = []
def first_use():
    from scipy.special import gammaln
    got.append(float(gammaln(5.0)))
threads = [threading.Thread(target=first_use) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()

import scipy.stats
from scipy import special as s
theirs = {
    "f_sf": [float(s.fdtrc(dfn, dfd, x)) if dfd != float("inf") else float(s.chdtrc(dfn, dfn * x)) for x, dfn, dfd in args],
    "chi2_sf": [float(s.chdtrc(df, x)) for x, df in [(3.1, 4), (0.01, 1), (60.0, 5)]],
    "t_p": [float(2 * s.stdtr(df, -abs(t))) if df else float(2 * s.ndtr(-abs(t))) for t, df in [(1.3, 11.2), (-4.2, 3.0), (0.2, 199.0), (2.0, None)]],
    "t_q": [float(s.stdtrit(df, p)) if df else float(s.ndtri(p)) for p, df in [(0.975, 7.3), (0.995, 36.79), (0.975, None)]],
    "power": [float(1 - s.ncfdtr(1, 20.5, 3.0, s.fdtri(1, 20.5, 0.95))), float(1 - s.chndtr(s.chdtri(1, 0.05), 1, 2.0))],
}
print(json.dumps({
    "deferred": deferred,
    "same": ours == theirs,
    "threads": got,
    "stats": float(scipy.stats.norm.cdf(1.0)),
    "module": type(sys.modules["scipy.special"]).__name__,
    "same_ufunc": d._special().ndtr is s.ndtr,
}))
"""


def test_p_values_come_from_scipys_ufuncs_without_its_init_and_scipy_works_after():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["deferred"] is True  # scipy.special's __init__ had not run for the p values
    assert out["same"] is True  # bit-for-bit the numbers of the public scipy.special functions
    assert out["threads"] == [3.1780538303479458] * 4  # ln(4!): every thread saw the whole module
    assert abs(out["stats"] - 0.8413447460685429) < 1e-15
    assert out["module"] == "module"  # an ordinary module once its __init__ has run
    assert out["same_ufunc"] is True


def test_an_imported_scipy_special_is_used_as_it_is():
    from scipy import special

    from analysis.stats import _distributions

    assert _distributions._special() in (special, special._ufuncs)
    assert _distributions.t_quantile(0.975, 10.0) == float(special.stdtrit(10.0, 0.975))
