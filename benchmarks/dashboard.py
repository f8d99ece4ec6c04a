"""Record asv results for the working tree and build the dashboard, readable offline.

    python -m benchmarks.dashboard              # a small selection: a few minutes
    python -m benchmarks.dashboard --all        # the whole suite (an hour or more on 2 cores)
    python -m benchmarks.dashboard --bench REGEX [--bench REGEX ...]
    python -m benchmarks.dashboard --no-run     # rebuild the HTML from the saved results
    python -m benchmarks.dashboard --serve      # ... then serve it at http://127.0.0.1:8080

Steps:

1. ``asv machine --yes`` when this machine has no asv machine file yet;
2. ``asv run -E existing:same --set-commit-hash HEAD --show-stderr --bench ...``: the
   current Python, with this folder first on the benchmarks' path (``ASV_PYTHONPATH``),
   so the working tree's fastnn is measured; the results are saved under HEAD's hash
   (uncommitted changes are measured too and filed under HEAD: a warning says so).
   While asv is silent (a long benchmark, a reference computation), a line every
   ``--heartbeat`` seconds says what is running and for how long;
3. ``asv publish`` writes ``.asv/html``;
4. the page loads jQuery, flot and Bootstrap from public CDNs.  Each of those tags is
   rewritten to a local copy in ``.asv/html/vendor/``, taken from the npm packages the
   CDN URLs name (``npm pack NAME@VERSION``: the npm client checks each tarball's
   integrity), cached in ``.asv/assets`` (``--assets``).  After the first run no
   network is needed.  Without npm and without a filled cache the page keeps the CDN
   tags (it then needs the internet) and the script says so.

The page reads its data with XMLHttpRequest, which browsers refuse for ``file://``
pages: serve the folder (``--serve``, ``asv preview`` or ``python -m http.server -d
.asv/html``) and open http://127.0.0.1:8080.

This module is a script: nothing runs at import time (asv imports every module in
``benchmarks/``), and it defines no ``time_``/``track_``/``mem_`` names.
"""

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: One benchmark per family, numpy and numba, float32: about 5 minutes on 2 busy cores.
DEFAULT_BENCH = [
    r"bench_kernels\.TimeBackwardHidden\.time_backward_hidden\('(numpy|numba)', 'float32'\)",
    r"bench_training\.TimeTrainStep\.time_step\('mnist', '(numpy|numba)', 'float32'\)",
    r"bench_startup\.TimerawImport\.timeraw_import_fastnn",
    r"bench_stability\.TrackGradientError\.track_dW_rel_error\('(numpy|numba)', '(deferred|absorbed)', "
    r"'float32', (100|10000|16384), 2\)",
    r"bench_quality\.TrackQuality\.track_test_accuracy\('(numpy|numba)', 'float32', 'adam-minibatch'\)",
]

#: CDN URL asv 0.6 writes -> (npm package@version, file in the package).  The versions are
#: those of the URLs; stupidtable 1.0.1 is not on npm, 1.1.3 has the same API.
ASSETS = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        ("flot@0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot@0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot@0.8.3", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}
#: Files a stylesheet refers to (Bootstrap's icon font), copied next to it.
EXTRA_FILES = {"bootstrap@3.1.1": "dist/fonts/"}

_TAG = re.compile(r'<(script|link)\b[^>]*?\b(?:src|href)="(https?://[^"]+)"[^>]*>(?:\s*</script>)?')


def _say(text):
    print(f"dashboard: {text}", flush=True)


def _asv(*args):
    return [sys.executable, "-m", "asv", *args]


def _stream(cmd, env, heartbeat):
    """Run ``cmd``, echoing its output; while it is silent, say every ``heartbeat`` s what runs."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    start = last = time.monotonic()
    current = "starting"
    while True:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            now = time.monotonic()
            if now - last >= heartbeat:
                _say(f"still running {current} ({_minutes(now - start)} elapsed)")
                last = now
            continue
        if line is None:
            break
        sys.stdout.write(line)
        sys.stdout.flush()
        last = time.monotonic()
        found = re.search(r"(?:Running|Setting up|Discovering) .*", line)
        if found:
            current = found.group(0).strip()[:120]
    proc.stdout.close()
    return proc.wait()


def _minutes(seconds):
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def _head():
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"dashboard: error: {ROOT} is not a git checkout with a commit "
                         f"(asv files results under a commit hash): {out.stderr.strip()}")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastnn", "benchmarks"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip(), bool(dirty)


def run_benchmarks(bench, heartbeat, machine=None):
    """Record results for the working tree under HEAD's hash; asv's exit status."""
    if machine is not None:
        subprocess.run(_asv("machine", "--yes", "--machine", machine), cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    elif not _machine_file().exists():
        _say("no asv machine file yet: asv machine --yes (this host's defaults)")
        subprocess.run(_asv("machine", "--yes"), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    commit, dirty = _head()
    if dirty:
        _say(f"warning: fastnn/ or benchmarks/ has uncommitted changes; they are measured and filed "
             f"under HEAD {commit[:10]}")
    env = dict(os.environ)
    extra = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["ASV_PYTHONPATH"] = os.pathsep.join(extra)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    cmd = _asv("run", "-E", "existing:same", "--set-commit-hash", commit, "--show-stderr")
    if machine is not None:
        cmd += ["--machine", machine]
    for regex in bench:
        cmd += ["--bench", regex]
    _say(f"asv run of {'the whole suite' if not bench else f'{len(bench)} selections'} for {commit[:10]}; "
         "asv prints each benchmark as it finishes")
    return _stream(cmd, env, heartbeat)


def _machine_file():
    return Path(os.environ.get("ASV_MACHINE_FILE", Path.home() / ".asv-machine.json"))


def _fetch_package(spec, cache):
    """``cache/spec/`` holding the npm package ``spec``, fetched with ``npm pack`` when missing."""
    folder = cache / spec
    if (folder / ".complete").exists():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([npm, "pack", spec, "--pack-destination", str(cache), "--silent"],
                         cwd=cache, capture_output=True, text=True)
    if out.returncode:
        _say(f"npm pack {spec} failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
        return None
    tgz = cache / out.stdout.strip().splitlines()[-1]
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or len(name.parts) < 2:
                continue
            target = folder.joinpath(*name.parts[1:])  # drop the tarball's "package/" prefix
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    tgz.unlink()
    (folder / ".complete").write_text(spec + "\n")
    return folder


def make_offline(html_dir, cache):
    """Rewrite the CDN tags of ``html_dir``'s pages to copies in ``html_dir/vendor``.

    Returns the CDN URLs left in place (empty when the pages need no network).
    """
    vendor = html_dir / "vendor"
    missing = set()
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8")

        def local(match):
            kind, url = match.group(1), match.group(2)
            if url not in ASSETS:
                missing.add(url)
                return match.group(0)
            spec, member = ASSETS[url]
            folder = _fetch_package(spec, cache)
            if folder is None or not (folder / member).is_file():
                missing.add(url)
                return match.group(0)
            rel = Path("vendor") / spec / member
            (html_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / member, html_dir / rel)
            if spec in EXTRA_FILES and (folder / EXTRA_FILES[spec]).is_dir():
                shutil.copytree(folder / EXTRA_FILES[spec], vendor / spec / EXTRA_FILES[spec], dirs_exist_ok=True)
            if kind == "script":
                return f'<script src="{rel.as_posix()}" onerror="js_load_failure()"></script>'
            return f'<link rel="stylesheet" href="{rel.as_posix()}">'

        new = _TAG.sub(local, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
    return sorted(missing)


def publish(cache):
    """``asv publish``, then the offline rewrite; True when the pages need no network."""
    code = subprocess.run(_asv("publish"), cwd=ROOT).returncode
    if code:
        raise SystemExit(f"dashboard: error: asv publish failed (exit {code})")
    html = ROOT / ".asv" / "html"
    missing = make_offline(html, cache)
    if missing:
        _say(f"the page still loads {len(missing)} script(s) from the internet ({missing[0]}, ...): "
             f"npm was not found and {cache} has no copies; install npm once, or open the page online")
        return False
    _say(f"wrote {html}/index.html; its scripts are local copies in {html}/vendor (works offline)")
    return True


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.dashboard",
                                description="Record asv results for the working tree and build the dashboard "
                                            "(.asv/html), with its scripts served locally.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--bench", action="append", metavar="REGEX",
                     help="benchmarks to run, asv's --bench (repeatable); default: one per family, "
                          "numpy and numba, float32")
    sel.add_argument("--all", action="store_true", help="run the whole suite (an hour or more)")
    sel.add_argument("--no-run", action="store_true", help="only rebuild the HTML from saved results")
    p.add_argument("--assets", type=Path, default=ROOT / ".asv" / "assets",
                   help="cache of the page's scripts (filled once with npm pack)")
    p.add_argument("--heartbeat", type=float, default=30.0,
                   help="seconds of silence from asv before a progress line")
    p.add_argument("--machine", default=None,
                   help="asv machine name (default: asv's, the host name); CI runners need a fixed one")
    p.add_argument("--serve", action="store_true", help="then serve the page at http://127.0.0.1:8080")
    return p


def main(argv=None):
    """Entry point: run, publish, make offline, optionally serve; the exit status."""
    args = build_parser().parse_args(argv)
    if args.heartbeat <= 0:
        build_parser().error(f"--heartbeat: must be > 0, got {args.heartbeat}")
    try:
        import asv  # noqa: F401
    except ImportError:
        raise SystemExit('dashboard: error: asv is not installed: pip install -e ".[bench]"') from None
    status = 0
    if not args.no_run:
        start = time.monotonic()
        status = run_benchmarks([] if args.all else (args.bench or DEFAULT_BENCH), args.heartbeat, args.machine)
        _say(f"asv run finished in {_minutes(time.monotonic() - start)} (exit {status}"
             f"{': a benchmark failed, see above' if status else ''})")
    publish(args.assets.resolve())
    if args.serve:
        _say("serving http://127.0.0.1:8080 (Ctrl-C stops)")
        subprocess.run(_asv("preview", "--port", "8080"), cwd=ROOT)
    return status


if __name__ == "__main__":
    sys.exit(main())
