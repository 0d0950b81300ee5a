"""Ray job entrypoint: ``embedforge filter`` as a script for ``ray job submit``.

Run: ``ray job submit --working-dir . -- python jobs/filter.py --config jobs/configs/filter_tiny.yaml``
(or locally, ``python jobs/filter.py --config ...``). It joins the cluster it is submitted to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.config import load_config
from embedforge.synthesis.filter import FilterConfig, run_filter
from embedforge.synthesis.summary import print_summary

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    config = load_config(parser.parse_args().config, FilterConfig)
    stats = run_filter(config)
    print_summary(stats, config.output_dir)
