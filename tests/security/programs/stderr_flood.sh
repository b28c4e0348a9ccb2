# yes(1) flooding stderr.
# expect: status=output_limit stderr_truncated=true
# limits: output=64K
yes flood >&2
