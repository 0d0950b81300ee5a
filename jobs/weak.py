"""Ray job entrypoint: ``embedforge weak`` as a script for ``ray job submit``.

Run: ``ray job submit --working-dir . -- python jobs/weak.py --config jobs/configs/weak_scifact.yaml``
(or locally, ``python jobs/weak.py --config ...``). It joins the cluster it is submitted to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.config import load_config
from embedforge.synthesis.summary import print_summary
from embedforge.synthesis.weak import WeakConfig, run_weak

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    config = load_config(parser.parse_args().config, WeakConfig)
    stats = run_weak(config)
    print_summary(stats, config.output_dir)
