"""What the emulated xend's host starts with: Domain-0, real captured domain records, and the
node record of xm(1)'s sample ``xm info``."""

from __future__ import annotations

import importlib.resources

from .._sxp import Sxp, parse_one

__all__ = ["SEED_FILES", "default_node", "seed_domains"]

#: Real captured xend records (libvirt's tests/sexpr2xmldata, see seed/PROVENANCE.md).
SEED_FILES = (
    "sexpr2xml-fv-legacy-vfb.sexpr",  # s10u4, HVM, -b----
    "sexpr2xml-pv-vfb-type-crash.sexpr",  # test2vm, PV, -b---- (its domid 1 clashes: renumbered)
    "sexpr2xml-curmem.sexpr",  # rhel5, PV, -b----, memory 175 of maxmem 385
    "sexpr2xml-fv-autoport.sexpr",  # domu-224, HVM, r-----
    "sexpr2xml-no-source-cdrom.sexpr",  # test, HVM, (status 0): a defined, inactive domain
)

_DOM0 = (
    "(domain (domid 0) (cpu_weight 256) (cpu_cap 0) (uuid 00000000-0000-0000-0000-000000000000)"
    " (vcpus 2) (name Domain-0) (on_poweroff destroy) (on_reboot restart) (on_crash restart)"
    " (maxmem 767) (memory 512) (shadow_memory 0) (vcpu_avail 3) (features ) (on_xend_start ignore)"
    " (on_xend_stop ignore) (start_time 1132003608.22) (cpu_time 2181.4) (online_vcpus 2)"
    " (image (linux (kernel ))) (status 2) (state r-----))"
)


def default_node() -> list[Sxp]:
    """``/xend/node`` as xend answers it; the values are the sample ``xm info`` of xm(1)."""
    return [
        "node",
        ["host", "talon"],
        ["release", "2.6.12.6-xen0"],
        ["version", "#1 Mon Nov 14 14:26:26 EST 2005"],
        ["machine", "i686"],
        ["nr_cpus", "2"],
        ["nr_nodes", "1"],
        ["cores_per_socket", "1"],
        ["threads_per_core", "1"],
        ["cpu_mhz", "696"],
        ["hw_caps", "0383fbff:00000000:00000000:00000040"],
        ["total_memory", "767"],
        ["free_memory", "37"],
        ["xen_major", "3"],
        ["xen_minor", "0"],
        ["xen_extra", "-devel"],
        ["xen_caps", "xen-3.0-x86_32"],
        ["xen_scheduler", "credit"],
        ["xen_pagesize", "4096"],
        ["platform_params", "virt_start=0xfc000000"],
        ["xen_changeset", "Mon Nov 14 18:13:38 2005 +0100 7793:090e44133d40"],
        ["cc_compiler", "gcc version 3.4.3 (Mandrakelinux 10.2 3.4.3-7mdk)"],
        ["cc_compile_by", "sdague"],
        ["cc_compile_domain", "(none)"],
        ["cc_compile_date", "Mon Nov 14 14:16:48 EST 2005"],
        ["xend_config_format", "4"],  # the sample says 3 (xend 3.0.4); the records are 3.1+ xend's
    ]


def seed_domains() -> list[list[Sxp]]:
    """Domain-0 (synthetic, in xend 4.1's key order) and the captured records, parsed."""
    recs: list[list[Sxp]] = []
    base = importlib.resources.files(__package__).joinpath("seed")
    for name in SEED_FILES:
        rec = parse_one(base.joinpath(name).read_text(encoding="utf-8"), continuation=True)
        assert isinstance(rec, list)
        recs.append(rec)
    dom0 = parse_one(_DOM0)
    assert isinstance(dom0, list)
    return [dom0, *recs]
