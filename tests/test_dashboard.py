"""``benchmarks/dashboard.py``: the asv page made to work offline, and progress while asv is silent."""

import importlib
import re
import sys
from pathlib import Path

import asv
import pytest

dashboard = importlib.import_module("benchmarks.dashboard")

ASV_WWW = Path(asv.__file__).parent / "www"
REMOTE = re.compile(r'<(?:script|link)\b[^>]*(?:src|href)="https?://')


def _fake_cache(cache):
    """A cache as ``npm pack`` leaves it, with a marker file per asset instead of the real scripts."""
    for spec, member in dashboard.ASSETS.values():
        target = cache / spec / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"/* {spec} {member} */\n")
        (cache / spec / ".complete").write_text(spec)
    fonts = cache / "bootstrap@3.1.1" / "dist" / "fonts"
    fonts.mkdir(parents=True, exist_ok=True)
    (fonts / "glyphicons-halflings-regular.woff").write_bytes(b"font")


def test_every_cdn_url_of_the_installed_asv_is_known():
    urls = [url for _, url in dashboard._TAG.findall((ASV_WWW / "index.html").read_text())]
    assert urls, "asv's index.html has no CDN tags: the rewrite is not needed any more"
    assert sorted(set(urls) - set(dashboard.ASSETS)) == []


def test_make_offline_rewrites_every_cdn_tag_to_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(dashboard.shutil, "which", lambda name: None)  # no npm: the cache must serve
    html = tmp_path / "html"
    html.mkdir()
    page = (ASV_WWW / "index.html").read_text()
    (html / "index.html").write_text(page)
    assert REMOTE.search(page)
    _fake_cache(tmp_path / "cache")
    assert dashboard.make_offline(html, tmp_path / "cache") == []
    new = (html / "index.html").read_text()
    assert not REMOTE.search(new)
    assert "integrity=" not in new and "crossorigin" not in new
    for src in re.findall(r'(?:src|href)="(vendor/[^"]+)"', new):
        assert (html / src).is_file(), src
    assert len(re.findall(r'"vendor/', new)) == len(dashboard.ASSETS)
    assert (html / "vendor" / "bootstrap@3.1.1" / "dist" / "fonts" / "glyphicons-halflings-regular.woff").is_file()
    assert dashboard.make_offline(html, tmp_path / "cache") == []  # idempotent


def test_without_npm_or_cache_the_tags_stay_and_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(dashboard.shutil, "which", lambda name: None)
    html = tmp_path / "html"
    html.mkdir()
    page = (ASV_WWW / "index.html").read_text()
    (html / "index.html").write_text(page)
    missing = dashboard.make_offline(html, tmp_path / "empty-cache")
    assert sorted(missing) == sorted({url for _, url in dashboard._TAG.findall(page)})
    assert (html / "index.html").read_text() == page


def test_progress_lines_while_the_command_is_silent(capsys):
    code = dashboard._stream([sys.executable, "-c", "import time; print('Running x', flush=True); time.sleep(2.5)"],
                             None, heartbeat=1.0)
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("dashboard: still running Running x") >= 1


def test_the_script_offers_asv_nothing_to_collect():
    prefixes = ("time_", "track_", "mem_", "peakmem_", "timeraw_")
    assert not [name for name in vars(dashboard) if name.startswith(prefixes)]
