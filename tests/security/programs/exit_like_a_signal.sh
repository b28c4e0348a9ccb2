# A shell's exit status after its child was killed by SIGSEGV is 139, an exit code: the box
# reports it as one (Judge0's "non-zero exit"), not as the program's own death by SIGSEGV.
# expect: status=runtime_error exit_code=139 signal=none
bash -c 'kill -SEGV $$'
exit $?
