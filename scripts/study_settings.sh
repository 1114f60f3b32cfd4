# Settings shared by the study scripts (sourced by scripts/ladder_commands.sh and
# scripts/regularizer_commands.sh), so that both studies warm up LSTMs the same way.
#
# WU: WarmupConfig.lstm()'s fields as compare.py --set overrides (docs/lstm_warmup.md): the
# gradient clipped to norm 1, VAA* averaged over 8 perturbations, restarts when VAA* collapses to
# at most 0.07 or the outputs still move more than 0.01 per step after settling, 10 at most.
# shellcheck disable=SC2034  # used by the scripts that source this file
WU="warmup_grad_clip=1.0 warmup_perturbations=8 warmup_restart_moving=0.01 warmup_restart_below=0.07 warmup_max_restarts=10"
