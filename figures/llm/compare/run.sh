#!/usr/bin/env bash
# The comparison of issue 16 (README: "The comparison, stated before its runs", amendment 2), on one
# CUDA GPU, resumable: a finished job (done.json) is skipped, so each stage can be rerun until complete.
#   bash figures/llm/compare/run.sh stage1 ROOT [SECONDS]   # each method's lr grid on seed 0, both tasks
#   bash figures/llm/compare/run.sh stage2 ROOT [SECONDS]   # seeds 1 and 2 at each chosen lr
#   bash figures/llm/compare/run.sh pack ROOT               # ROOT's job folders -> figures/llm/compare/runs.tgz
#   bash figures/llm/compare/run.sh report ROOT             # figures/llm/compare/{report.md, llm_compare.png, ...}
# ROOT/runs.tgz's folders are the state to resume from: `tar -xzf figures/llm/compare/runs.tgz -C ROOT`.
# Greedy decoding and the small steps are launch-bound, so jobs run side by side under CUDA MPS
# (started here when the control daemon exists) with one CPU thread each.
set -u
here=$(cd "$(dirname "$0")" && pwd)
stage=$1 root=$2 budget=${3:-3600}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mps() { command -v nvidia-cuda-mps-control >/dev/null && { nvidia-cuda-mps-control -d 2>/dev/null; sleep 1; }; }
# timeout ends the sweep's parent; its joblib workers and stage 2's runs would hold the GPU on
cleanup() { pkill -f popen_loky_posix; pkill -f 'bin/lorasim-llm'; sleep 2; }
sweep="run.device=cuda hydra/launcher=joblib"
case $stage in
  stage1)
    mps
    timeout "$budget" lorasim-llm experiment=compare_arith $sweep hydra.launcher.n_jobs=8 hydra.sweep.dir="$root/arith1" \
      > "$root/arith1.log" 2>&1 &
    timeout "$budget" lorasim-llm experiment=compare_bbc $sweep hydra.launcher.n_jobs=4 hydra.sweep.dir="$root/bbc1" \
      > "$root/bbc1.log" 2>&1 &
    wait
    cleanup ;;
  stage2)
    mps
    { python -m lorasim.llm.compare "$root/arith1" compare_arith "$root/arith2" run.device=cuda
      python -m lorasim.llm.compare "$root/bbc1" compare_bbc "$root/bbc2" run.device=cuda; } > "$root/stage2.txt"
    timeout "$budget" xargs -P "${JOBS:-10}" -I{} sh -c '{} >> "$0/stage2.log" 2>&1' "$root" < "$root/stage2.txt"
    cleanup ;;
  pack)
    tar -czf "$here/runs.tgz.tmp" -C "$root" --exclude='*.log' --exclude='*.png' --exclude='stage2.txt' arith1 bbc1 \
      $(cd "$root" && ls -d arith2 bbc2 2>/dev/null) && mv "$here/runs.tgz.tmp" "$here/runs.tgz" ;;
  report)
    lorasim-llm-report "$root/arith1" "$root/bbc1" $(ls -d "$root"/arith2/* "$root"/bbc2/* 2>/dev/null) out="$here" ;;
  *) echo "usage: run.sh stage1|stage2|pack|report ROOT [SECONDS]" >&2; exit 2 ;;
esac
