# Never ends: stopped by the CPU time limit.
while true; do :; done
