// Heavy loopback traffic, to run beside the test suite: the suite must not depend on any port being free.
//
//   dotnet run scripts/loopback-churn.cs -- [--seconds N] [--clients N]     (N = 0 seconds: until Ctrl+C or SIGTERM)
//
// A listener on 127.0.0.1 (a port the system picks) and --clients loops (default 16) that each connect, send one
// byte and close first, as fast as they can: thousands of connections a second, each leaving a socket in
// TIME_WAIT on an ephemeral port, so the kernel's ephemeral range churns and a port that was free a moment ago
// often is not (what made a fixture that took one free port and assumed the next four fail). Every 5 s it says
// on stderr how many connections it made and how many sockets are in TIME_WAIT (/proc/net/sockstat).
using System.Net;
using System.Net.Sockets;

var seconds = 0;
var clients = 16;
for (var i = 0; i + 1 < args.Length; i++)
{
    if (args[i] == "--seconds") seconds = int.Parse(args[++i]);
    else if (args[i] == "--clients") clients = int.Parse(args[++i]);
}

using var stop = new CancellationTokenSource();
if (seconds > 0) stop.CancelAfter(TimeSpan.FromSeconds(seconds));
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(
    System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });

using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
listener.Listen(4096);
var target = (IPEndPoint)listener.LocalEndPoint!;
long connections = 0, failures = 0;

var server = Task.Run(async () =>
{
    while (!stop.IsCancellationRequested)
    {
        Socket s;
        try { s = await listener.AcceptAsync(stop.Token); }
        catch (Exception e) when (e is OperationCanceledException or SocketException) { continue; }
        // Read to the client's FIN, then close: the client closes first, so the TIME_WAIT is on its ephemeral port.
        _ = Task.Run(async () =>
        {
            using (s)
            {
                var buf = new byte[16];
                try { while (await s.ReceiveAsync(buf) > 0) { } }
                catch (SocketException) { }
            }
        });
    }
});

var one = new byte[] { 1 };
var loops = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
{
    while (!stop.IsCancellationRequested)
    {
        using var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await c.ConnectAsync(target, stop.Token);
            await c.SendAsync(one);
            c.Shutdown(SocketShutdown.Both);
            Interlocked.Increment(ref connections);
        }
        catch (OperationCanceledException) { }
        catch (SocketException)
        {
            // Ephemeral ports exhausted or the backlog full: that is the point; back off a little.
            Interlocked.Increment(ref failures);
            await Task.Delay(5);
        }
    }
})).ToArray();

Console.Error.WriteLine($"loopback-churn: {clients} clients against {target}{(seconds > 0 ? $" for {seconds} s" : "")}");
long last = 0;
while (!stop.IsCancellationRequested)
{
    try { await Task.Delay(TimeSpan.FromSeconds(5), stop.Token); }
    catch (OperationCanceledException) { break; }
    var now = Interlocked.Read(ref connections);
    var tw = File.ReadLines("/proc/net/sockstat").FirstOrDefault(l => l.StartsWith("TCP:"))?.Split(' ') is { } f
        && Array.IndexOf(f, "tw") is var k and >= 0 ? f[k + 1] : "?";
    Console.Error.WriteLine($"loopback-churn: {(now - last) / 5} connections/s, {tw} sockets in TIME_WAIT, {Interlocked.Read(ref failures)} failed connects");
    last = now;
}
await Task.WhenAll(loops);
Console.Error.WriteLine($"loopback-churn: {connections} connections in all, {failures} failed connects");
