// The C++ program of funccount's tests: after a line on stdin it calls
// Shape::area() 300 times, Shape::scale(double) 200 times and
// Shape::name() const 7 times on one object (a constructor call first),
// then prints a checksum. Built with g++ -O1 -fno-omit-frame-pointer
// -fno-inline. Each method writes calls_: a method GCC found pure would
// be called once for the whole loop.
#include <cstdio>

class Shape {
public:
	Shape(double w, double h);
	double area() const;
	void scale(double k);
	const char *name() const;

private:
	double w_, h_;
	mutable int calls_ = 0;
};

Shape::Shape(double w, double h) : w_(w), h_(h) {}
double Shape::area() const { calls_++; return w_ * h_; }
void Shape::scale(double k) { calls_++; w_ *= k; h_ *= k; }
const char *Shape::name() const { calls_++; return "rectangle"; }

int main()
{
	char line[16];
	if (!std::fgets(line, sizeof(line), stdin))
		return 1;
	Shape s(1.0, 2.0);
	double sum = 0;
	for (int i = 0; i < 300; i++)
		sum += s.area();
	for (int i = 0; i < 200; i++)
		s.scale(i % 2 ? 2.0 : 0.5);
	int n = 0;
	for (int i = 0; i < 7; i++)
		n += s.name()[i];
	std::printf("%g %d\n", sum, n);
	return 0;
}
