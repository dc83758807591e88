#!/usr/bin/env bash
# One lease: the cameras-in-workers bench at 64 cameras with py-spy on the engine process and on one worker, then 32/48.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
SPY=/tmp/site/bin/py-spy
C="python3 run_live.py --bench --source .gpu/squat_24.mp4 --bench-frames 150 --stream-seconds 10 --pose-model vitpose-b --backend torch --weights random --max-batch 64 --workers 24 --bench-no-overlay"
timeout 110 $C --streams 64 --bench-json $OUT/s64.json > $OUT/s64.log 2>&1 &
B=$!
sleep 24
MAIN=$(pgrep -f "^python3 run_live.py" | head -1)
WORKER=$(pgrep -f "multiprocessing.spawn" | head -1)
echo "main $MAIN worker $WORKER"
timeout 20 $SPY record -p "$MAIN" -d 6 -r 100 --idle --nonblocking -f raw -o $OUT/spy_main.txt > $OUT/spy.log 2>&1 &
timeout 20 $SPY record -p "$WORKER" -d 6 -r 100 --idle --nonblocking -f raw -o $OUT/spy_worker.txt >> $OUT/spy.log 2>&1 &
wait $B; echo "64: exit $?"; tail -6 $OUT/s64.log; tail -3 $OUT/spy.log
timeout 100 $C --streams 32,48 --bench-json $OUT/s3248.json > $OUT/s3248.log 2>&1; echo "32,48: exit $?"; tail -6 $OUT/s3248.log
