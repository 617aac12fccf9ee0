// The Rust program of funccount's tests: after a line on stdin it makes a
// Shape (Shape::new once), calls Shape::area 300 times, Shape::scale 200
// times and geometry::perimeter 7 times, then prints a checksum. Built by
// the tests with rustc -C opt-level=1; #[inline(never)] and black_box
// keep every call a call.
use std::hint::black_box;
use std::io::BufRead;

struct Shape {
    w: f64,
    h: f64,
}

impl Shape {
    #[inline(never)]
    fn new(w: f64, h: f64) -> Shape {
        Shape { w, h }
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

fn main() {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        std::process::exit(1);
    }
    let mut s = Shape::new(black_box(1.0), black_box(2.0));
    let mut sum = 0.0;
    for _ in 0..300 {
        sum += black_box(&s).area();
    }
    for i in 0..200 {
        black_box(&mut s).scale(if i % 2 == 1 { 2.0 } else { 0.5 });
    }
    for _ in 0..7 {
        sum += geometry::perimeter(black_box(s.w), black_box(s.h));
    }
    println!("{}", sum);
}
