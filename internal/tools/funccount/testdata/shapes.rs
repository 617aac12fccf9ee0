// The Rust program of funccount's tests: after a line on stdin it makes a
// Shape (Shape::new once), calls Shape::area 300 times, Shape::scale 200
// times and geometry::perimeter 7 times, then prints a checksum. Built by
// the tests with rustc -C opt-level=1; #[inline(never)] and opaque keep
// every call a call. Plain Rust 1.63 (Debian 12's rustc): no
// std::hint::black_box.

struct Shape {
    w: f64,
    h: f64,
}

impl Shape {
    #[inline(never)]
    fn new(w: f64, h: f64) -> Shape {
        Shape { w: w, h: h }
    }

    #[inline(never)]
    fn area(&self) -> f64 {
        self.w * self.h
    }

    #[inline(never)]
    fn scale(&mut self, k: f64) {
        self.w *= k;
        self.h *= k;
    }
}

mod geometry {
    #[inline(never)]
    pub fn perimeter(w: f64, h: f64) -> f64 {
        2.0 * (w + h)
    }
}

// opaque returns x through a volatile read, so the optimizer cannot see
// its value: a call made with it cannot be folded or hoisted.
fn opaque<T: Copy>(x: T) -> T {
    unsafe { std::ptr::read_volatile(&x) }
}

fn main() {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        std::process::exit(1);
    }
    let mut s = Shape::new(opaque(1.0), opaque(2.0));
    let mut sum = 0.0;
    for _ in 0..300 {
        sum += opaque(&s).area();
    }
    for i in 0..200 {
        let k = if i % 2 == 1 { 2.0 } else { 0.5 };
        s.scale(opaque(k));
    }
    for _ in 0..7 {
        sum += geometry::perimeter(opaque(s.w), opaque(s.h));
    }
    println!("{}", sum);
}
