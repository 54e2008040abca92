"""``make app`` / ``python -m projects.app.main``: the paperlab web app on 127.0.0.1, its address printed.

    python -m projects.app.main [--port 7860] [--ckpt stylemask=last.ckpt --ckpt dferclip=last.ckpt ...]
        [--max-upload-mb 200] [--workdir DIR]

``--ckpt TAB=PATH`` (tabs: stylemask, hyperreenact, dferclip, generator, maskcon) runs your own Lightning
checkpoint (for ``generator`` also a rosinality/NVIDIA file) in that tab instead of the released weights.
Nothing leaves the machine: Gradio's analytics are off and no share link is made.
"""

from __future__ import annotations

import argparse
import os
import socket


def parse_ckpts(items: list[str]) -> dict[str, str]:
    """``["tab=path", ...]`` -> ``{tab: path}``; a malformed item raises ``ValueError`` naming it."""
    out = {}
    for item in items:
        tab, sep, path = item.partition("=")
        if not sep or not tab or not path:
            raise ValueError(f"--ckpt takes TAB=PATH (e.g. stylemask=last.ckpt), got {item!r}")
        out[tab.strip()] = path.strip()
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="paperlab web app (Gradio) on this machine")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    p.add_argument("--ckpt", action="append", default=[], metavar="TAB=PATH", help="your checkpoint for a tab")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload, in MB")
    p.add_argument("--workdir", default=None, help="folder for results (default: a new temporary folder)")
    a = p.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from projects.app.app import PaperlabApp, page_theme

    app = PaperlabApp(parse_ckpts(a.ckpt), a.workdir, a.max_upload_mb)
    page = app.build()
    port = a.port or free_port(a.host)
    page.queue(default_concurrency_limit=1)
    print(f"[paperlab app] results go to {app.workdir}", flush=True)
    page.launch(
        server_name=a.host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=True,
        theme=page_theme(),
        quiet=True,
        max_file_size=int(a.max_upload_mb * 2**20),
        allowed_paths=[str(app.workdir)],
        prevent_thread_lock=True,
    )
    print(f"[paperlab app] serving on http://{a.host}:{port}  (Ctrl-C to stop)", flush=True)
    page.block_thread()


if __name__ == "__main__":
    main()
