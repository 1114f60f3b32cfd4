#!/bin/bash
# The memory-length ladder of docs/ladder.md (issue 19): every compare.py invocation, in the order
# they were queued, one output directory per group of settings. Each command resumes (finished
# runs are reused, interrupted ones continue), so the whole file can be re-run after an
# interruption, e.g. one section per core:
#   nohup bash scripts/ladder_commands.sh gru_long > ladder_long.log 2>&1 &
#   nohup bash scripts/ladder_commands.sh gru_short others > ladder_short.log 2>&1 &
# It takes many hours on 2 cores; never run two invocations on the same --output-dir (they lock it).
# `report` (last line) rebuilds every results.csv from the runs on disk and writes the ladder.
set -u
cd "$(dirname "$0")/.."
source scripts/study_settings.sh  # WU
CK="warmup_vaa_checkpoints=100,200,500,1000,2000,5000,10000,20000"
P=rl_warmup/PassiveTMaze
G="--workers 1"
# The ladder's LSTM runs (lstm, chrono_lstm, forget bias 1) were trained on oneDNN's LSTM, before
# the compiled LSTM kernel (2026-12-07): keep it, so that resumed and re-run ones stay bit for bit.
export RL_WARMUP_LSTM_EXT=0

gru_long() {  # the L = 1000 target and its cold reference, then L = 500
  python scripts/compare.py --cells gru --conditions warmed --envs $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_main --set $CK
  python scripts/compare.py --cells gru --conditions cold --envs $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_main --set $CK
  python scripts/compare.py --cells gru --conditions warmed --envs $P-L1000-v0 --seeds 3 4 $G --output-dir results/ladder_main --set $CK
}
gru_short() {  # L = 500, 250, 100 and the T-Maze L = 100
  python scripts/compare.py --cells gru --conditions warmed cold --envs $P-L500-v0 --seeds 0 1 2 $G --output-dir results/ladder_main_a --set $CK
  python scripts/compare.py --cells gru --conditions warmed cold --envs $P-L250-v0 $P-L100-v0 rl_warmup/TMaze-L100-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_main_a --set $CK
}
others() {  # LSTM (WarmupConfig.lstm()'s warmup fields) and the alternatives, L = 100 and 250
  python scripts/compare.py --cells lstm --conditions warmed cold --envs $P-L100-v0 $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_lstm --set $CK $WU
  python scripts/compare.py --cells nbrc brc --conditions cold --envs $P-L100-v0 $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_alt --set $CK
  python scripts/compare.py --cells lstm --conditions cold --envs $P-L100-v0 $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_fb1 --set $CK lstm_forget_bias=1
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $P-L100-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_chrono100 --set $CK t_max=100
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_chrono250 --set $CK t_max=250
}
long_alt() {  # L = 500 and 1 000 for the cells that are cheap or that beat warmup below: the LSTMs
  # (oneDNN, minutes per run) and the nBRC (cold 5/5 at L = 100 and 250); the nBRC runs stop at
  # their first 95 % evaluation to fit ~30 min per run (their "final success" is the one at the stop)
  python scripts/compare.py --cells nbrc --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_nbrc_long --set $CK stop_at_threshold=true
  python scripts/compare.py --cells lstm --conditions warmed cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_lstm_long --set $CK $WU
  python scripts/compare.py --cells lstm --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_fb1_long --set $CK lstm_forget_bias=1
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $P-L500-v0 --seeds 0 1 2 $G --output-dir results/ladder_chrono500 --set $CK t_max=500
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_chrono1000 --set $CK t_max=1000
}
remaining() {  # what the ladder still lacks after the fourth session (each command skips finished runs):
  # the LSTM baselines and the BRC at L = 500 and 1 000 (long_alt without its nBRC runs, which are documented)
  python scripts/compare.py --cells lstm --conditions warmed cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_lstm_long --set $CK $WU
  python scripts/compare.py --cells lstm --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_fb1_long --set $CK lstm_forget_bias=1
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $P-L500-v0 --seeds 0 1 2 $G --output-dir results/ladder_chrono500 --set $CK t_max=500
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_chrono1000 --set $CK t_max=1000
  python scripts/compare.py --cells brc --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 $G --output-dir results/ladder_brc_long --set $CK
}
tmaze_gru() {  # the T-Maze L = 100 (active) alone for the GRU (the same runs as gru_short's last line)
  python scripts/compare.py --cells gru --conditions warmed cold --envs rl_warmup/TMaze-L100-v0 --seeds 0 1 2 3 4 $G --output-dir results/ladder_main_a --set $CK
}

tmaze() {  # the T-Maze L = 100 (active) for the conditions other than the GRU's (those are in gru_short)
  T=rl_warmup/TMaze-L100-v0
  python scripts/compare.py --cells lstm --conditions warmed cold --envs $T --seeds 0 1 2 3 4 $G --output-dir results/ladder_tmaze_lstm --set $CK $WU
  python scripts/compare.py --cells lstm --conditions cold --envs $T --seeds 0 1 2 3 4 $G --output-dir results/ladder_tmaze_fb1 --set $CK lstm_forget_bias=1
  python scripts/compare.py --cells chrono_lstm --conditions cold --envs $T --seeds 0 1 2 3 4 $G --output-dir results/ladder_tmaze_chrono --set $CK t_max=100
  python scripts/compare.py --cells nbrc brc --conditions cold --envs $T --seeds 0 1 2 3 4 $G --output-dir results/ladder_tmaze_alt --set $CK
}
lstm_lasting() {  # warmed LSTM at L = 250 with the lasting-separation restarts (WarmupConfig.lstm_lasting(250)), 10 seeds
  python scripts/compare.py --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 5 6 7 8 9 $G --output-dir results/ladder_lstm_lasting2 --set $WU_LASTING_250
}
lstm_lasting_at250() {  # its first form: the movement rule read at 250 steps (3 of 10 warmups ran out of restarts)
  python scripts/compare.py --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 5 6 7 8 9 $G --output-dir results/ladder_lstm_lasting --set $WU_LASTING_250_AT250
}
speedups() {  # finite cold / warmed ratios at L = 10 and 50: cold agents get 10x the warmed budget
  for E in "$P-v0 20000" "$P-L50-v0 60000"; do
    set -- $E
    python scripts/compare.py --cells gru --conditions warmed --envs $1 --seeds 0 1 2 3 4 $G --output-dir results/speedup --set stop_at_threshold=true
    python scripts/compare.py --cells gru --conditions cold --envs $1 --seeds 0 1 2 3 4 $G --output-dir results/speedup --total-timesteps $(( $2 * 10 )) --set stop_at_threshold=true
  done
}
report() {  # every directory's results.csv over its whole grid (runs not yet trained are listed as missing), then the ladder
  R="--report-only --workers 1"
  python scripts/compare.py $R --cells gru --conditions warmed cold --envs $P-L1000-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_main --set $CK
  python scripts/compare.py $R --cells gru --conditions warmed cold --envs $P-L500-v0 $P-L250-v0 $P-L100-v0 rl_warmup/TMaze-L100-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_main_a --set $CK
  python scripts/compare.py $R --cells lstm --conditions warmed cold --envs $P-L100-v0 $P-L250-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_lstm --set $CK $WU
  python scripts/compare.py $R --cells nbrc brc --conditions cold --envs $P-L100-v0 $P-L250-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_alt --set $CK
  python scripts/compare.py $R --cells lstm --conditions cold --envs $P-L100-v0 $P-L250-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_fb1 --set $CK lstm_forget_bias=1
  python scripts/compare.py $R --cells chrono_lstm --conditions cold --envs $P-L100-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_chrono100 --set $CK t_max=100
  python scripts/compare.py $R --cells chrono_lstm --conditions cold --envs $P-L250-v0 --seeds 0 1 2 3 4 --output-dir results/ladder_chrono250 --set $CK t_max=250
  python scripts/compare.py $R --cells nbrc --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 --output-dir results/ladder_nbrc_long --set $CK stop_at_threshold=true
  python scripts/compare.py $R --cells lstm --conditions warmed cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 --output-dir results/ladder_lstm_long --set $CK $WU
  python scripts/compare.py $R --cells lstm --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 --output-dir results/ladder_fb1_long --set $CK lstm_forget_bias=1
  python scripts/compare.py $R --cells chrono_lstm --conditions cold --envs $P-L500-v0 --seeds 0 1 2 --output-dir results/ladder_chrono500 --set $CK t_max=500
  python scripts/compare.py $R --cells chrono_lstm --conditions cold --envs $P-L1000-v0 --seeds 0 1 2 --output-dir results/ladder_chrono1000 --set $CK t_max=1000
  python scripts/compare.py $R --cells brc --conditions cold --envs $P-L500-v0 $P-L1000-v0 --seeds 0 1 2 --output-dir results/ladder_brc_long --set $CK
  T=rl_warmup/TMaze-L100-v0
  python scripts/compare.py $R --cells lstm --conditions warmed cold --envs $T --seeds 0 1 2 3 4 --output-dir results/ladder_tmaze_lstm --set $CK $WU
  python scripts/compare.py $R --cells lstm --conditions cold --envs $T --seeds 0 1 2 3 4 --output-dir results/ladder_tmaze_fb1 --set $CK lstm_forget_bias=1
  python scripts/compare.py $R --cells chrono_lstm --conditions cold --envs $T --seeds 0 1 2 3 4 --output-dir results/ladder_tmaze_chrono --set $CK t_max=100
  python scripts/compare.py $R --cells nbrc brc --conditions cold --envs $T --seeds 0 1 2 3 4 --output-dir results/ladder_tmaze_alt --set $CK
  python scripts/compare.py $R --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 5 6 7 8 9 --output-dir results/ladder_lstm_lasting2 --set $WU_LASTING_250
  python scripts/compare.py $R --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 5 6 7 8 9 --output-dir results/ladder_lstm_lasting --set $WU_LASTING_250_AT250
  python scripts/compare.py $R --cells gru --conditions warmed cold --envs $P-v0 $P-L50-v0 --seeds 0 1 2 3 4 --output-dir results/speedup --set stop_at_threshold=true
  local dirs=""
  for d in results/ladder_main results/ladder_main_a results/ladder_lstm results/ladder_alt results/ladder_fb1:fb1 results/ladder_chrono100 results/ladder_chrono250 \
           results/ladder_nbrc_long results/ladder_lstm_long results/ladder_fb1_long:fb1 results/ladder_chrono500 results/ladder_chrono1000 results/ladder_brc_long \
           results/ladder_tmaze_lstm results/ladder_tmaze_fb1:fb1 results/ladder_tmaze_chrono results/ladder_tmaze_alt \
           results/ladder_lstm_lasting2:lasting results/ladder_lstm_lasting:lasting-at250; do
    [ -f "${d%%:*}/results.csv" ] && dirs="$dirs $d"
  done
  # with the points of reports whose run directories are gone (docs/ladder_points_earlier.csv)
  python scripts/ladder_report.py $dirs --points docs/ladder_points_earlier.csv --output-dir results/ladder_report
  python scripts/ladder_report.py results/speedup --output-dir results/ladder_speedup
}

if [ $# -eq 0 ]; then
  echo "usage: bash scripts/ladder_commands.sh SECTION... (gru_long gru_short others long_alt remaining tmaze_gru tmaze lstm_lasting lstm_lasting_at250 speedups report)" >&2
  exit 2
fi
for section in "$@"; do "$section"; done
