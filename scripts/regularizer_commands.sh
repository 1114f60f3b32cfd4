#!/bin/bash
# The VAA* regulariser study of docs/regularizer.md (issue 15): warmup alone, warmup + regulariser
# ("warmed-reg") and regulariser alone, GRU and LSTM, Passive T-Maze L = 100 and 250 and copy
# T = 600, five seeds. Every command resumes (finished runs are reused, interrupted ones
# continue), so a section can be re-run after an interruption, one section per core:
#   nohup bash scripts/regularizer_commands.sh l250_lstm l100_lstm > reg_lstm.log 2>&1 &
# Never run two invocations on the same --output-dir (they lock it). `report` (last) rebuilds
# every results.csv from the runs on disk (runs not trained yet are listed as missing) and
# merges the RL rows into one table and plot (results/reg_report/ladder.md, ladder.png).
#
# The regulariser: reg_coef=1 with a 1 000-step settling (reg_settle_max=1000), the setting that
# kept the attractors at L = 100 (docs/regularizer.md, *Second study*). Its "alone" row is the
# cold condition of the same invocation. LSTMs use WarmupConfig.lstm()'s warmup fields ($WU), as
# in the ladder; GRUs the paper's warmup. Presets of each length otherwise.
set -e
P=rl_warmup/PassiveTMaze
G="--workers 1"
source "$(dirname "$0")/study_settings.sh"  # WU, SUP_WU
REG="reg_coef=1.0 reg_settle_max=1000"
SUP="--task copy --length 600 --n-train 1600 --n-val 500 --n-test 1000 --epochs 12 --seeds 0 1 2 3 4 --workers 1 --threads 1 --no-progress"
SUP_REG="--reg-coef 1.0 --reg-settle-max 1000"

l250_gru() {
  python scripts/compare.py --cells gru --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/reg_L250_gru_base
  python scripts/compare.py --cells gru --conditions warmed cold --envs $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/reg_L250_gru_reg --set $REG
}
l250_lstm() {
  python scripts/compare.py --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/reg_L250_lstm_base --set $WU
  python scripts/compare.py --cells lstm --conditions warmed cold --envs $P-L250-v0 --seeds 0 1 2 3 4 $G --output-dir results/reg_L250_lstm_reg --set $WU $REG
}
l250_lstm_more() {  # seeds 5-9 of l250_lstm (warmup + regulariser reached 95 % in 5/5 there, warmup alone 3/5)
  python scripts/compare.py --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 5 6 7 8 9 $G --output-dir results/reg_L250_lstm_base --set $WU
  python scripts/compare.py --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 5 6 7 8 9 $G --output-dir results/reg_L250_lstm_reg --set $WU $REG
}
l100_lstm() {
  python scripts/compare.py --cells lstm --conditions warmed --envs $P-L100-v0 --seeds 0 1 2 3 4 $G --output-dir results/reg_L100_lstm_base --set $WU
  python scripts/compare.py --cells lstm --conditions warmed cold --envs $P-L100-v0 --seeds 0 1 2 3 4 $G --output-dir results/reg_L100_lstm_reg --set $WU $REG
}
copy600_gru() {
  python scripts/supervised.py $SUP --cells gru --modes full --out results/reg_copy600_gru_base --resume
  python scripts/supervised.py $SUP --cells gru --modes full none --out results/reg_copy600_gru_reg $SUP_REG --resume
}
copy600_lstm() {
  python scripts/supervised.py $SUP --cells lstm --modes full --out results/reg_copy600_lstm_base $SUP_WU --resume
  python scripts/supervised.py $SUP --cells lstm --modes full none --out results/reg_copy600_lstm_reg $SUP_WU $SUP_REG --resume
}

report() {
  R="--report-only --workers 1"
  python scripts/compare.py $R --cells gru --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 --output-dir results/reg_L250_gru_base
  python scripts/compare.py $R --cells gru --conditions warmed cold --envs $P-L250-v0 --seeds 0 1 2 3 4 --output-dir results/reg_L250_gru_reg --set $REG
  python scripts/compare.py $R --cells lstm --conditions warmed --envs $P-L250-v0 --seeds 0 1 2 3 4 5 6 7 8 9 --output-dir results/reg_L250_lstm_base --set $WU
  python scripts/compare.py $R --cells lstm --conditions warmed cold --envs $P-L250-v0 --seeds 0 1 2 3 4 5 6 7 8 9 --output-dir results/reg_L250_lstm_reg --set $WU $REG
  python scripts/compare.py $R --cells lstm --conditions warmed --envs $P-L100-v0 --seeds 0 1 2 3 4 --output-dir results/reg_L100_lstm_base --set $WU
  python scripts/compare.py $R --cells lstm --conditions warmed cold --envs $P-L100-v0 --seeds 0 1 2 3 4 --output-dir results/reg_L100_lstm_reg --set $WU $REG
  local dirs=""
  for d in results/reg_L250_gru_base results/reg_L250_gru_reg:reg results/reg_L250_lstm_base results/reg_L250_lstm_reg:reg \
           results/reg_L100_lstm_base results/reg_L100_lstm_reg:reg; do
    [ -f "${d%%:*}/results.csv" ] && dirs="$dirs $d"
  done
  python scripts/ladder_report.py $dirs --output-dir results/reg_report
}

if [ $# -eq 0 ]; then
  echo "usage: bash scripts/regularizer_commands.sh SECTION... (l250_gru l250_lstm l250_lstm_more l100_lstm copy600_gru copy600_lstm report)" >&2
  exit 2
fi
for section in "$@"; do "$section"; done
