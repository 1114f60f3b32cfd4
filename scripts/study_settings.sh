# Settings shared by the study scripts (sourced by scripts/ladder_commands.sh and
# scripts/regularizer_commands.sh), so that both studies warm up LSTMs the same way.
#
# WU: WarmupConfig.lstm()'s fields as compare.py --set overrides (docs/lstm_warmup.md): the
# gradient clipped to norm 1, VAA* averaged over 8 perturbations, restarts when VAA* collapses to
# at most 0.07 or the outputs still move more than 0.01 per step after settling, 10 at most.
# shellcheck disable=SC2034  # used by the scripts that source this file
WU="warmup_grad_clip=1.0 warmup_perturbations=8 warmup_restart_moving=0.01 warmup_restart_below=0.07 warmup_max_restarts=10"
# SUP_WU: the same fields as scripts/supervised.py options (--warmup-grad-clip 1.0 ...)
SUP_WU=""
for kv in $WU; do k=${kv%%=*}; SUP_WU="$SUP_WU --${k//_/-} ${kv#*=}"; done

# WU_LASTING_250: WarmupConfig.lstm_lasting(250)'s fields (tests/test_ladder.py checks they are
# equal): WarmupConfig.lstm()'s warmup, then restarts (20 at most) unless, on eight fresh draws,
# the exact VAA of the outputs has not halved by 500 settling steps and they move less than 1e-3
# per step after 1 000 (variant ck8-h8m of docs/lstm_warmup.md, there for a memory of 1 000).
WU_LASTING_250="warmup_grad_clip=1.0 warmup_perturbations=8 warmup_restart_below=0.07 warmup_restart_moving=0.001 warmup_restart_moving_at=1000 warmup_restart_horizon=500 warmup_vaa_checkpoints=100,200,250,500,1000 warmup_check_draws=8 warmup_max_restarts=20"
# The first form of it (movement read at 250 steps), kept to resume and report its runs:
WU_LASTING_250_AT250="warmup_grad_clip=1.0 warmup_perturbations=8 warmup_restart_below=0.07 warmup_restart_moving=0.001 warmup_restart_moving_at=250 warmup_restart_horizon=500 warmup_vaa_checkpoints=100,200,250,500 warmup_check_draws=8 warmup_max_restarts=20"
