using Conduit.Common.Config;
using Conduit.Edge;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;

// conduit [--role R]      the server: all-in-one, or one part of a split deployment (edge, keys, rooms, sync, federation, media)
// conduit backup [DIR], check-config, create-user, healthcheck, --rotate-signing-key, --help: Cli.Usage.
// A start that fails for a known reason (config, database, listener) is one line on stderr and exit code 2.
var role = ConduitHost.AllInOne;
string? roleArg = null;
var rotate = false;
var admin = false;
var positional = new List<string>();
for (var i = 0; i < args.Length; i++)
    if (args[i] == "--role" && i + 1 < args.Length) role = roleArg = args[++i].ToLowerInvariant();
    else if (args[i] == "--rotate-signing-key") rotate = true;
    else if (args[i] == "--admin") admin = true;
    else if (args[i] is "--help" or "-h" or "help") { Console.WriteLine(Cli.Usage); return 0; }
    else if (!args[i].StartsWith("--", StringComparison.Ordinal)) positional.Add(args[i]);

switch (positional.FirstOrDefault())
{
    case "check-config":
        return Cli.CheckConfig();
    case "create-user":
        try { return Cli.CreateUser(ConfigLoader.Load(), role, positional.ElementAtOrDefault(1), positional.ElementAtOrDefault(2), admin); }
        catch (ConfigException e) { Console.Error.WriteLine($"conduit: {e.Message}"); return 2; }
    case "healthcheck":
        try { return await Cli.HealthCheckAsync(ConfigLoader.Load(), role); }
        catch (ConfigException e) { Console.Error.WriteLine($"conduit: {e.Message}"); return 2; }
    case "backup":
        try { return await Cli.BackupAsync(ConfigLoader.Load(), roleArg, positional.ElementAtOrDefault(1)); }
        catch (ConfigException e) { Console.Error.WriteLine($"conduit: {e.Message}"); return 2; }
    case { } unknown:
        Console.Error.WriteLine($"conduit: unknown command '{unknown}' (conduit --help lists them)");
        return 2;
}

if (rotate)
{
    try
    {
        Console.WriteLine($"conduit: {ConduitHost.RotateSigningKey(ConfigLoader.Load(), role)}");
        return 0;
    }
    catch (Exception e) when (e is ConfigException or StartupException)
    {
        Console.Error.WriteLine($"conduit: {e.Message}");
        return 2;
    }
}

WebApplication app;
try
{
    app = ConduitHost.Build(ConfigLoader.Load(), role, args, ownsProcess: true);
}
catch (Exception e) when (e is ConfigException or StartupException)
{
    Console.Error.WriteLine($"conduit: {e.Message}");
    return 2;
}

await using (app)
{
    try
    {
        await app.StartAsync();
    }
    catch (Exception e) when (StartupReport.ListenFailure(e) is { } reason)
    {
        Console.Error.WriteLine($"conduit: cannot listen on {ConduitHost.ListenEndpoint(app.Services.GetRequiredService<GlobalConfig>(), role)}: {reason}");
        // Stop the background services that did start before disposing: otherwise the host reports each one that
        // had not begun running (.NET 10 runs ExecuteAsync through Task.Run) as a crashed service, with a stack trace.
        try { await app.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(5)).Token); } catch (Exception) { }
        return 2;
    }
    await app.WaitForShutdownAsync();
}
return 0;
