public class Main {
    public static void main(String[] args) { long n = 0; while (true) { n++; if (n == -1) break; } System.out.println(n); }
}
