"""What a cold ``virtkit -c xen:/// list`` pays for this plugin (issue 14): the modules an open,
a listing and domstats load import none of typing, dataclasses, inspect, logging, subprocess,
tempfile, shutil or random. The check runs a fresh interpreter: what is imported is a property
of the process."""

from __future__ import annotations

import pickle
import subprocess
import sys

from virtkit_xen_hyper import _abi as A

_OFF = ("typing", "dataclasses", "inspect", "logging", "subprocess", "tempfile", "shutil", "random")


def test_the_start_up_modules_load_none_of_them() -> None:
    # Dropped first: an editable install's finder may load some at interpreter start-up.
    code = (
        f"import sys\nfor m in {_OFF!r}:\n    sys.modules.pop(m, None)\n"
        "import virtkit_xen_hyper\n"
        "from virtkit_xen_hyper import _abi, _driver, _hyper, _plugin, _privcmd, _stats\n"
        f"print(' '.join(m for m in {_OFF!r} if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == []


def test_the_records_keep_their_tuple_behaviour() -> None:
    abi = A.abi_for(4, 17, ".0")
    assert repr(abi).startswith("Abi(domctl=") and abi._fields == ("domctl", "sysctl", "known")
    assert abi.dominfo.name and abi == (abi.domctl, abi.sysctl, abi.known)
    assert pickle.loads(pickle.dumps(abi)) == abi and type(pickle.loads(pickle.dumps(abi))) is A.Abi
    info = A.DomInfo._make((1, 2, 3, 4, 5, 6, 7, b"h"))
    assert info._replace(domid=9).domid == 9 and not hasattr(info, "__dict__")
