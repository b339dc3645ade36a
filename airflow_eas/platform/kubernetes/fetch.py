"""``python -m airflow_eas.platform.kubernetes.fetch oss://bucket/prefix DEST``: an ``oss`` storage init container.

The single host's downloader (``ObjectStore``), run inside the pod before the service starts;
keys come from the environment (``EAS_OSS_*``, filled from a Secret), never from arguments.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from airflow_eas.errors import EasError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m airflow_eas.platform.kubernetes.fetch oss://bucket/prefix DEST", file=sys.stderr)
        return 2
    uri, dest = args[0], Path(args[1])
    from airflow_eas.server.storage import ObjectStore, OssConfig

    config = OssConfig.from_env()
    try:
        if not config.endpoint:
            raise EasError("no object-store endpoint: set EAS_OSS_ENDPOINT in the oss Secret or oss.endpoint")
        fetched = ObjectStore(config.endpoint, config).fetch(uri, dest / ".download", "storage", folder=True)
        for item in fetched.iterdir():
            shutil.move(str(item), dest / item.name)
        shutil.rmtree(dest / ".download", ignore_errors=True)
    except EasError as exc:
        print(f"fetch {uri}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
