#!/bin/bash
# Screening queue for the desire-BP hyperparameter study (issue #12): one run at a time.
# usage: queue.sh EPOCHS NAME "ARGS" [NAME "ARGS" ...]
cd /work/main
export MFSNN_DATA=/work/shared/datasets
EP=$1; shift
while [ $# -ge 2 ]; do
  name=$1; args=$2; shift 2
  out=results/convergence/screen/$name
  if [ -f $out/metrics.json ]; then echo "$(date -u +%T) $name exists, skipped"; continue; fi
  mkdir -p $out
  cmd="python -m mfsnn train --quiet --rule desire --dataset mnist --epochs $EP $args --out $out"
  echo "$cmd" > $out/command.txt
  echo "$(date -u +%T) start $name: $cmd"
  $cmd > $out/train.log 2>&1
  echo "$(date -u +%T) end $name rc=$? $(python -c "import json;m=json.load(open('$out/metrics.json'));print(m['test_accuracy'])" 2>&1)"
done
