IFS='|'; echo "$*"
