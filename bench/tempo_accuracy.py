"""Benchmark: tempo and first-downbeat accuracy of ``importer.tempo.analyse`` on synthesised
ground truth, and its cost.

The signals are those of tests/test_tempo.py (``synth``): a click track (kick + click on the
downbeat) and a drum pattern (kick on 1, half kick on 3, noise snare on 2 and 4), each over a
two-note pad and white noise, the first downbeat ``first`` seconds in. Tempos 70-170 BPM in
steps of 7.5 (92.5 among them) x 3 first-downbeat offsets x both kinds; the declared tempo
is the truth rounded to a multiple of 5 (MusicGen asked for 90, played 92.5).

Prints the worst and median |BPM error| and |first downbeat error|, the cases that failed
(no tempo, or more than 0.5 BPM / 20 ms off) and the median CPU seconds per analysis.

    .venv/bin/python bench/tempo_accuracy.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_tempo import RATE, synth  # noqa: E402  (after the sys.path line above)

from importer.tempo import analyse  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    analyse(synth(120.0, 0.5, 8.0, drums=True)[None], RATE, 4, 120.0)  # librosa loads here
    bpm_errors, downbeat_errors, cpu, failed = [], [], [], []
    tempos = [70.0 + 7.5 * i for i in range(14)]  # 70 .. 167.5
    tempos.append(170.0)
    for bpm in tempos:
        for first in (0.13, 0.61, 1.37):
            for drums in (False, True):
                audio = synth(bpm, first, args.seconds, drums=drums, seed=int(bpm * 10) + int(first * 100))[None]
                declared = 5.0 * round(bpm / 5.0)
                start = time.process_time()
                found = analyse(audio, RATE, 4, declared)
                cpu.append(time.process_time() - start)
                case = f"{bpm:g} BPM, first {first} s, {'drums' if drums else 'clicks'}"
                if found.tempo is None:
                    failed.append(f"{case}: {found.reason}")
                    continue
                e_bpm = abs(found.tempo.bpm - bpm)
                e_db = abs(found.tempo.first_downbeat - first)
                bpm_errors.append(e_bpm)
                downbeat_errors.append(e_db)
                if e_bpm > 0.5 or e_db > 0.020:
                    failed.append(
                        f"{case}: {found.tempo.bpm:.3f} BPM, first downbeat {found.tempo.first_downbeat:.3f} s"
                    )
    cases = len(tempos) * 6
    print(f"{cases} cases of {args.seconds:g} s ({len(tempos)} tempos 70-170 BPM x 3 offsets x clicks/drums)")
    print(f"  |BPM error|            max {max(bpm_errors):.4f}  median {statistics.median(bpm_errors):.4f}")
    print(
        f"  |first downbeat error| max {1000 * max(downbeat_errors):.1f} ms  median "
        f"{1000 * statistics.median(downbeat_errors):.1f} ms"
    )
    print(f"  CPU per analysis       median {statistics.median(cpu):.3f} s  max {max(cpu):.3f} s")
    print(f"  outside 0.5 BPM / 20 ms or unmeasured: {len(failed)}")
    for line in failed:
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
