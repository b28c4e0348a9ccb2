# One file past the file size limit: the writer gets SIGXFSZ, the file stops at the limit.
# expect: status=ok
# limits: file_size=4M
# stdout-contains: size=4194304
head -c 100M /dev/zero > /box/big
echo "head exited with $?"
echo "size=$(stat -c %s /box/big)"
