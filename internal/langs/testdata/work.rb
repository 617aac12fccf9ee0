# Test program of the runtime tools: "calls N" calls Work#step N times
# (a method defined in Ruby) and Integer#pow N times (a C method); "gc"
# runs GC.start. ucalls_test.go starts it as ucalls --help says, with a
# TracePoint for :call and :return, which makes ruby fire
# method__entry/return.
$stdout.sync = true

class Work
  def step(i)
    i + 1
  end
end

w = Work.new
puts "ready"
while (line = $stdin.gets)
  cmd, arg = line.split
  case cmd
  when "calls"
    n = arg.to_i
    n.times { |i| w.step(i); i.pow(2) }
    puts "called #{n}"
  when "gc"
    GC.start
    puts "gc done"
  else
    puts "?"
  end
end
