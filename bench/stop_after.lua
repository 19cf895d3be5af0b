-- wrk script for the RSS measurement, which needs a request count rather than a duration:
-- after BENCH_STOP_AFTER responses (per thread; the bench uses -t1) the thread stops and
-- BENCH_STOP_FILE is created; bench.py then sends wrk SIGINT, which ends the run early (wrk's
-- main thread otherwise sleeps for the whole -d duration) and prints the usual summary.
local limit = tonumber(os.getenv("BENCH_STOP_AFTER") or "1000000")
local marker = os.getenv("BENCH_STOP_FILE")
local n = 0

function response(status, headers, body)
   n = n + 1
   if n == limit then
      if marker then
         local f = io.open(marker, "w")
         if f then
            f:write(n, "\n")
            f:close()
         end
      end
      wrk.thread:stop()
   end
end
