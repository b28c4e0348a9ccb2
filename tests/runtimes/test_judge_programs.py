"""Ordinary judge solutions under Judge0's default limits: a correct program
that fits must be accepted, and one that does not must get the verdict that
names the limit it broke (never a misleading one)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stockade.engine import Submission, TestCase, Verdict
from stockade.sandbox import KiB, Limits
from tests.runtimes import available

# Judge0 CE 1.13.1's defaults: cpu_time_limit 5, wall_time_limit 10, memory_limit
# 128000 KB, stack_limit 64000 KB, max_processes_and_or_threads 60, max_file_size 1024 KB.
JUDGE0 = Limits(cpu_time=5, wall_time=10, memory=128000 * KiB, stack=64000 * KiB,
                processes=60, output=1024 * KiB)


def judge(engine, catalog, key: str, source: str, stdin: bytes = b"", expected: bytes | None = None,
          limits: Limits = JUDGE0):
    available(catalog, key)
    test = TestCase(stdin, expected)
    return engine.run_sync(Submission(key, source.encode(), tests=(test,), run_limits=limits))


JAVA_BIG_ARRAY = """
public class Main {
    public static void main(String[] args) {
        int[] a = new int[22_500_000];  // 90 MB, in one piece
        for (int i = 0; i < a.length; i++) a[i] = i;
        long s = 0;
        for (int i = 0; i < a.length; i += 1000) s += a[i];
        System.out.println(s);
    }
}
"""

JAVA_HASHMAP = """
import java.util.*;
public class Main {
    public static void main(String[] args) {
        int n = new Scanner(System.in).nextInt();
        HashMap<Integer, Integer> m = new HashMap<>();
        for (int i = 0; i < n; i++) m.put(i * 7, i);
        long s = 0;
        for (int round = 0; round < 20; round++)  // boxing i * 7: garbage, with the map live
            for (int i = 0; i < n; i += 3) s += m.get(i * 7);
        System.out.println(m.size() + " " + s);
    }
}
"""


@pytest.mark.parametrize("source, stdin, expected", [
    (JAVA_BIG_ARRAY, b"", b"253113750000\n"),
    (JAVA_HASHMAP, b"1000000\n", b"1000000 3333336666660\n"),
], ids=["int-array-90MB", "hashmap-1e6"])
def test_java_program_that_fits_the_memory_limit_is_accepted(engine, catalog, source, stdin, expected):
    """The JVM's heap is most of the memory limit, not 60% of it (75 MiB of 125:
    the array did not fit, and the map thrashed the GC into a time limit), and
    its old generation most of the heap (a sixth of it young: the 90 MB array
    was an OutOfMemoryError)."""
    result = judge(engine, catalog, "java", source, stdin, expected)
    assert result.verdict is Verdict.accepted, result.tests[0].run


JAVA_THREADS = """
public class Main {
    public static void main(String[] args) {
        for (int i = 0; i < 100; i++) {  // more threads than the 60 allowed
            Thread t = new Thread(() -> { try { Thread.sleep(60_000); } catch (InterruptedException e) { } });
            t.setDaemon(true);
            t.start();
        }
        System.out.println("started");
    }
}
"""


def test_java_thread_limit_is_a_runtime_error_not_memory(engine, catalog):
    """The JVM calls a refused pthread_create an OutOfMemoryError ("unable to
    create native thread"): it is the process limit, with a few MiB in use."""
    result = judge(engine, catalog, "java", JAVA_THREADS)
    run = result.tests[0].run
    assert b"unable to create native thread" in run.stderr
    assert result.verdict is Verdict.runtime_error, run


# Far more than any host would overcommit: the allocation itself fails, before the
# cgroup sees a byte (a few GiB less and it is an OOM kill, a memory_limit: which
# of the two a program gets must not depend on the host's RAM).
HUGE_ALLOCATIONS = {
    "cpp": ("#include <cstdio>\n#include <vector>\nint main(){long long n; scanf(\"%lld\",&n);"
            " std::vector<long long> v(n); v[n-1]=1; printf(\"%zu\\n\", v.size());}",
            b"100000000000000000\n"),
    "rust": ("fn main(){let mut s=String::new();std::io::stdin().read_line(&mut s).unwrap();"
             "let n:usize=s.trim().parse().unwrap();let mut v=vec![0i64;n];v[n-1]=1;println!(\"{}\",v.len());}",
             b"100000000000000000\n"),
    "go": ("package main\nimport \"fmt\"\nfunc main(){var n int;fmt.Scan(&n);v:=make([]int64,n);"
           "v[n-1]=1;fmt.Println(len(v))}", b"17592186044416\n"),  # 128 TiB: under Go's own cap
}


@pytest.mark.parametrize("key", sorted(HUGE_ALLOCATIONS))
def test_refused_allocation_is_a_memory_limit(engine, catalog, key):
    source, stdin = HUGE_ALLOCATIONS[key]
    result = judge(engine, catalog, key, source, stdin)
    assert result.verdict is Verdict.memory_limit, result.tests[0].run


def test_go_out_of_memory_is_a_memory_limit_on_one_stream(engine, catalog):
    """With stderr in stdout, Go's "fatal error: out of memory" is still seen,
    though the stacks of 500 goroutines after it (~270 KB) bury it."""
    available(catalog, "go")
    source, stdin = HUGE_ALLOCATIONS["go"]
    source = source.replace("func main(){", 'import "time"\nfunc init(){for i:=0;i<500;i++{go time.Sleep(time.Hour)}}\n'
                            "func main(){time.Sleep(10*time.Millisecond);")
    result = engine.run_sync(Submission("go", source.encode(), tests=(TestCase(stdin),), run_limits=JUDGE0,
                                        redirect_stderr_to_stdout=True))
    run = result.tests[0].run
    assert run.stderr == b"" and len(run.stdout) > 65536, run
    assert result.verdict is Verdict.memory_limit, run.stdout[:200]


JS_RECURSION = """
function depth(n) { return n === 0 ? 0 : depth(n - 1) + 1; }
const n = +require('fs').readFileSync(0, 'utf8');
console.log(depth(n));
"""


def test_javascript_recursion_uses_the_stack_limit(engine, catalog):
    """10^5 frames fit Judge0's 64000 KB stack: V8's own check follows it."""
    result = judge(engine, catalog, "javascript", JS_RECURSION, b"100000\n", b"100000\n")
    assert result.verdict is Verdict.accepted, result.tests[0].run


def test_javascript_recursion_past_the_stack_is_a_clean_runtime_error(engine, catalog):
    """Past the stack, V8's RangeError comes before the rlimit's SIGSEGV."""
    result = judge(engine, catalog, "javascript", JS_RECURSION, b"10000000\n")
    run = result.tests[0].run
    assert result.verdict is Verdict.runtime_error and run.signal is None, run
    assert b"RangeError: Maximum call stack size exceeded" in run.stderr


JS_LIVE_ARRAY_AND_QUEUE = """
const a = new Array(6_000_000).fill(1);  // 48 MB, live to the end
let q = [], s = 0;
for (let i = 0; i < 4e6; i++) { q.push({v: i, w: [i]}); if (q.length > 200000) q = q.slice(100000); }
for (const o of q) s += o.v;
console.log(s + a.length);
"""


def test_javascript_program_that_fits_the_heap_is_not_oom_killed(engine, catalog):
    """V8's young generation (up to 48 MiB by default) is beside its old space
    (75% of the limit): together they passed 125 MiB, and the kernel killed a
    program that V8's own heap held (about 100 MiB in all)."""
    result = judge(engine, catalog, "javascript", JS_LIVE_ARRAY_AND_QUEUE, expected=b"780005900000\n")
    assert result.verdict is Verdict.accepted, result.tests[0].run


JAVA_RECURSION = """
import java.util.Scanner;
public class Main {
    static long depth(long n) { return n == 0 ? 0 : depth(n - 1) + 1; }
    public static void main(String[] args) {
        long n = new Scanner(System.in).nextLong();
        System.out.println(n < 0 ? depth(Long.MAX_VALUE) : depth(n));  // n < 0: never ends
    }
}
"""


def test_java_recursion_uses_the_stack_limit(engine, catalog):
    """A depth-first search 10^6 deep fits Judge0's 64000 KB stack (-Xss)."""
    result = judge(engine, catalog, "java", JAVA_RECURSION, b"1000000\n", b"1000000\n")
    assert result.verdict is Verdict.accepted, result.tests[0].run


def test_java_infinite_recursion_is_a_runtime_error_not_memory(engine, catalog):
    """The JVM's search for @ReservedStackAccess frames on a stack overflow kept
    native memory per frame: 2.5 million frames took the run past 125 MiB, a
    memory_limit for what is a StackOverflowError."""
    result = judge(engine, catalog, "java", JAVA_RECURSION, b"-1\n")
    run = result.tests[0].run
    assert result.verdict is Verdict.runtime_error and run.exit_code == 1, run
    assert b"java.lang.StackOverflowError" in run.stderr
    assert run.memory < JUDGE0.memory


JS_WORKERS = """
const { Worker } = require('worker_threads');
const n = 14;
let done = 0;
for (let i = 0; i < n; i++) {
  new Worker('require("worker_threads").parentPort.postMessage(1)', { eval: true })
    .on('message', () => { if (++done === n) console.log(done); })
    .on('error', e => { console.log(e.message); process.exitCode = 1; });
}
"""


def test_javascript_worker_threads_are_bounded_by_the_process_limit(engine, catalog):
    """14 workers (~100 MB of V8 isolates: about as many as 125 MiB holds,
    well within 60 threads) need ~76 descriptors: they ran out of the 64
    first (EMFILE at the 12th)."""
    result = judge(engine, catalog, "javascript", JS_WORKERS, expected=b"14\n")
    assert result.verdict is Verdict.accepted, result.tests[0].run


def test_php_error_is_reported_once_on_stderr(engine, catalog):
    """display_errors on stderr, and Debian's php.ini logs errors to stderr as
    well: each error was there twice."""
    result = judge(engine, catalog, "php", '<?php\necho "before\\n";\n$x = intdiv(1, 0);\n')
    run = result.tests[0].run
    assert result.verdict is Verdict.runtime_error and run.stdout == b"before\n", run
    assert run.stderr.count(b"Uncaught DivisionByZeroError") == 1, run.stderr


# Judge0's enable_per_process_and_thread_memory_limit: the limit is on each
# process's address space (RLIMIT_AS). The JVM, V8 and Go's runtime reserve
# gigabytes of it before main: a hello world died of SIGSEGV, SIGABRT or
# "fatal error" (and Ruby, with a VM stack sized from the stack limit). For
# them the limit applies to the run as a whole.
PER_PROCESS = replace(JUDGE0, per_process_memory=True)
HELLO_AND_HOG = {
    "java": ('public class Main { public static void main(String[] a) { System.out.println("hi"); } }',
             "public class Main { public static void main(String[] a) { java.util.List<long[]> k ="
             " new java.util.ArrayList<>(); while (true) k.add(new long[1 << 20]); } }"),
    "javascript": ('console.log("hi")', "const k = []; while (true) k.push(new Float64Array(1 << 20).fill(1));"),
    "ruby": ('puts "hi"', 'k = []; loop { k << "x" * (1 << 20) }'),
    "go": ('package main\nimport "fmt"\nfunc main() { fmt.Println("hi") }\n',
           "package main\nfunc main() { var k [][]byte; for { b := make([]byte, 1<<20); for i := range b"
           " { b[i] = 1 }; k = append(k, b) } }\n"),
}


@pytest.mark.parametrize("key", sorted(HELLO_AND_HOG))
def test_a_vm_runs_under_a_per_process_memory_limit_and_is_still_bounded(engine, catalog, key):
    hello, hog = HELLO_AND_HOG[key]
    result = judge(engine, catalog, key, hello, expected=b"hi\n", limits=PER_PROCESS)
    assert result.verdict is Verdict.accepted, result.tests[0].run
    result = judge(engine, catalog, key, hog, limits=PER_PROCESS)
    assert result.verdict is Verdict.memory_limit, result.tests[0].run
    assert result.tests[0].run.memory <= 128000 * KiB + 8 * 1024 * KiB, result.tests[0].run


GO_GOROUTINES = """package main
import ("fmt"; "sync")
func main() {
    var wg sync.WaitGroup
    sums := make([]int, 1000)
    for i := range sums { wg.Add(1); go func(i int) { defer wg.Done(); for j := 0; j < 10000; j++ { sums[i] += j % (i + 1) } }(i) }
    wg.Wait()
    t := 0; for _, s := range sums { t += s }
    fmt.Println(t)
}
"""


@pytest.mark.parametrize("processes", [1, 3])
def test_go_runtime_threads_do_not_count_against_a_low_process_limit(engine, catalog, processes):
    """Judge0 allows max_processes_and_or_threads from 1: Go's runtime takes 4
    threads before main, and a Go program died at 1 to 3 (as Java's and Node's
    did before their minimums)."""
    limits = replace(JUDGE0, processes=processes)
    result = judge(engine, catalog, "go", GO_GOROUTINES, expected=b"2469784681\n", limits=limits)
    assert result.verdict is Verdict.accepted, result.tests[0].run.stderr[:300]


RUBY_RECURSION = "def depth(n)\n  n == 0 ? 0 : depth(n - 1) + 1\nend\nputs depth(gets.to_i)\n"


def test_ruby_recursion_uses_the_stack_limit(engine, catalog):
    """Ruby's VM stack was 1 MiB whatever the stack limit: 10^5 frames were a
    SystemStackError under Judge0's 64000 KB. It is sized from the limit."""
    result = judge(engine, catalog, "ruby", RUBY_RECURSION, b"100000\n", b"100000\n")
    assert result.verdict is Verdict.accepted, result.tests[0].run
    # Past it: a clean runtime error, Ruby's own.
    result = judge(engine, catalog, "ruby", RUBY_RECURSION, b"10000000\n")
    run = result.tests[0].run
    assert result.verdict in (Verdict.runtime_error, Verdict.memory_limit) and run.signal is None, run
    assert b"stack level too deep" in run.stderr or b"NoMemoryError" in run.stderr or b"failed to allocate" in run.stderr, run.stderr[-300:]
