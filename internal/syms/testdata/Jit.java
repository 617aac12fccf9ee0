import java.io.FileOutputStream;
import java.io.IOException;

// A hot call chain main -> top -> mid -> leaf whose leaf calls a native
// method (FileOutputStream.writeBytes, a JNI function of libjava): run
// with -XX:+PreserveFramePointer and dontinline so that each method is
// its own JIT frame. It prints "warm" after WARM_MS of calls (compiled by
// then), then calls on for SECONDS.
public class Jit {
    static FileOutputStream out;
    static final byte[] buf = new byte[1];

    static void leaf() throws IOException { out.write(buf); }
    static void mid() throws IOException { leaf(); }
    static void top() throws IOException { mid(); }

    public static void main(String[] args) throws Exception {
        out = new FileOutputStream("/dev/null");
        long warm = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000L;
        while (System.nanoTime() < warm) top();
        System.out.println("warm");
        System.out.flush();
        long end = System.nanoTime() + Long.parseLong(args[1]) * 1_000_000_000L;
        while (System.nanoTime() < end) top();
    }
}
