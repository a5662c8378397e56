"""Cost of open() as unrelated plugin distributions pile up: 0, 50 and 200 installed.

Builds one venv per count under build/bench-open/, installs the core plus N generated distributions, each a
real installed distribution (dist-info with METADATA, RECORD and an entry point in
virtkit.drivers for its own scheme) and one target plugin, then measures in fresh processes:
  first  - the first open() of the process (discovery included)
  steady - later open() calls in the same process
Target (issue 2): <= +10 % from 0 to 200.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench-open"

TARGET = textwrap.dedent(
    """
    import uuid
    from virtkit import DomainInfo, DomainRef, DomainState, hookimpl
    virtkit_catalogue = "1.0"
    virtkit_name = "benchtarget"
    R = DomainRef("x", uuid.UUID(int=1), 1)
    class D:
        def connect_get_type(self, *, flags=0): return "B"
        def connect_list_domains(self, *, flags=0): return [1]
        def domain_lookup_by_id(self, id, *, flags=0): return R
        def domain_lookup_by_name(self, name, *, flags=0): return R
        def domain_lookup_by_uuid(self, uuid, *, flags=0): return R
        def domain_get_info(self, dom, *, flags=0): return DomainInfo(DomainState.RUNNING, 1, 1, 1, 0)
    @hookimpl
    def open(uri, options): return D()
    """
)

PROBE = textwrap.dedent(
    """
    import json, time, virtkit
    t0 = time.perf_counter(); virtkit.open("benchtarget:///").close(); first = time.perf_counter() - t0
    times = []
    for _ in range(300):
        t0 = time.perf_counter(); virtkit.open("benchtarget:///").close(); times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"first": first, "steady": times[len(times) // 2]}))
    """
)


def make_dist(site: pathlib.Path, name: str, scheme: str, module_src: str) -> None:
    mod = site / f"{name}.py"
    mod.write_text(module_src)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[virtkit.drivers]\n{scheme} = {name}:plugin_obj\n")
    (info / "RECORD").write_text(f"{name}.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def venv_for(n: int) -> pathlib.Path:
    env = WORK / f"venv{n}"
    py = env / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)], check=True)
    site = pathlib.Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    make_dist(site, "benchtarget", "benchtarget", TARGET + "\nimport sys\nplugin_obj = sys.modules[__name__]\n")
    for i in range(n):
        src = f"raise RuntimeError('unrelated plugin {i} must never be imported')\n"
        make_dist(site, f"unrelated{i}", f"unrel{i}", src)
    return py


def measure(py: pathlib.Path, runs: int = 15) -> dict[str, float]:
    firsts, steadies = [], []
    env = {**os.environ, "XDG_CACHE_HOME": str(WORK / "cache")}
    for _ in range(runs):
        out = subprocess.run([str(py), "-c", PROBE], capture_output=True, text=True, check=True, env=env, timeout=120)
        r = json.loads(out.stdout)
        firsts.append(r["first"])
        steadies.append(r["steady"])
    return {"first": statistics.median(firsts), "steady": statistics.median(steadies)}


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    counts = (0, 50, 200)
    pys = {n: venv_for(n) for n in counts}
    results = {n: measure(pys[n]) for n in counts}
    base = results[0]
    for n in counts:
        r = results[n]
        print(
            f"{n:>4} unrelated plugins: first open {r['first'] * 1e3:7.2f} ms ({r['first'] / base['first']:.2f}x), "
            f"steady open {r['steady'] * 1e6:7.1f} us ({r['steady'] / base['steady']:.2f}x)"
        )
    first, steady = results[200]["first"] / base["first"], results[200]["steady"] / base["steady"]
    print(f"ratio 200/0: first {first:.2f}x, steady {steady:.2f}x  (target <= 1.10x)")


if __name__ == "__main__":
    main()
