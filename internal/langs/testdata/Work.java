import java.io.BufferedReader;
import java.io.InputStreamReader;

// Test program of the runtime tools: reads commands on stdin, answers one
// line each. "calls N": Work.step() N times (each calls Work.inner());
// "gc": System.gc(); "thread NAME": starts a thread so named, joins it.
public class Work {
    static long sum;

    static void inner(int i) { sum += i; }

    static void step(int i) { inner(i); }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready");
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.trim().split(" ");
            switch (f[0]) {
                case "calls":
                    int n = Integer.parseInt(f[1]);
                    for (int i = 0; i < n; i++) step(i);
                    System.out.println("called " + n);
                    break;
                case "gc":
                    System.gc();
                    System.out.println("gc done");
                    break;
                case "thread":
                    Thread t = new Thread(() -> { sum++; }, f[1]);
                    t.start();
                    t.join();
                    System.out.println("thread " + t.getId());
                    break;
                default:
                    System.out.println("?");
            }
        }
    }
}
