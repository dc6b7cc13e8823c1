"""Hold-out evaluation (DESIGN.md, "Evaluation protocol").

* :mod:`.withhold` withholds frames (temporal ×k) or mean-pools (spatial ×k) a real stack;
* :mod:`.baselines` nearest / linear / cubic (scipy-exact), motion-compensated and smoothed;
* :mod:`.metrics` PSNR and SSIM on percentile-normalized intensities;
* :mod:`.protocol` :func:`run_evaluation`, the generator the CLI, the API and the QC widget share;
* :mod:`.report` JSON / CSV / PNG files and the printed table.
"""

from .protocol import EvalResult, run_evaluation
from .report import format_table, read_report, write_report

__all__ = ["EvalResult", "format_table", "read_report", "run_evaluation", "write_report"]
