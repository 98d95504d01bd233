using System.Diagnostics;
using System.Text.RegularExpressions;
using Conduit.Common.Routing;

namespace Conduit.Functional.Tests;

/// <summary>
/// The deployment files checked by the tools that read them: docker-compose.yml by Debian's docker-compose (both
/// profiles; the split profile's roles are exactly those scripts/split-up.sh starts, which the split test runs use),
/// deploy/conduit.service by systemd-analyze, and the reverse proxy examples against the route table (every path the
/// server answers is forwarded). scripts/test.sh installs docker-compose and systemd; without them (a developer's
/// machine) the checks that need them are left out unless CI is set.
/// </summary>
public sealed class DeploymentFileTests
{
    static readonly string Root = ServerFixture.RepoRoot();

    static async Task<(int Code, string Stdout, string Stderr)?> Run(string tool, string[] args, Dictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(tool, args) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Root };
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, $"{tool} is not installed (scripts/test.sh installs it)");
            return null;
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            return (p.ExitCode, await stdout, await stderr);
        }
    }

    /// <summary>Each service of a normalized `docker-compose config` output: its profiles and command.</summary>
    static Dictionary<string, (List<string> Profiles, List<string> Command)> Services(string yaml)
    {
        var services = new Dictionary<string, (List<string>, List<string>)>();
        string? service = null, list = null;
        var inServices = false;
        foreach (var line in yaml.Split('\n'))
        {
            if (!line.StartsWith(' ')) { inServices = line.TrimEnd() == "services:"; service = null; continue; }
            if (!inServices) continue;
            if (Regex.Match(line, @"^  ([a-z-]+):\s*$") is { Success: true } s) { service = s.Groups[1].Value; services[service] = ([], []); list = null; continue; }
            if (service is null) continue;
            if (Regex.Match(line, @"^    ([a-z_]+):") is { Success: true } k) { list = k.Groups[1].Value; continue; }
            if (Regex.Match(line, @"^    - (.+)$") is { Success: true } item)
            {
                if (list == "profiles") services[service].Item1.Add(item.Groups[1].Value.Trim());
                if (list == "command") services[service].Item2.Add(item.Groups[1].Value.Trim());
            }
        }
        return services;
    }

    [Fact]
    public async Task The_compose_file_is_valid_with_an_all_in_one_profile_and_a_split_profile_of_the_roles_split_up_starts()
    {
        if (await Run("docker-compose", ["-f", "docker-compose.yml", "config"], new() { ["CONDUIT_INTERNAL_SECRET"] = "x" }) is not { } r) return;
        Assert.True(r.Code == 0, r.Stderr);
        var services = Services(r.Stdout);
        var allInOne = Assert.Single(services, s => s.Value.Profiles.Contains("all-in-one"));
        Assert.Empty(allInOne.Value.Command);
        var splitUp = File.ReadAllLines(Path.Combine(Root, "scripts", "split-up.sh")).Single(l => l.StartsWith("roles=(", StringComparison.Ordinal));
        var roles = splitUp["roles=(".Length..^1].Split(' ').Prepend("edge").Order().ToList();
        var split = services.Where(s => s.Value.Profiles.Contains("split")).ToList();
        Assert.Equal(roles, split.Select(s => s.Key).Order().ToList());
        foreach (var (name, (_, command)) in split) Assert.Equal(["--role", name], command);
        Assert.All(services, s => Assert.Single(s.Value.Profiles));
    }

    [Fact]
    public async Task The_systemd_unit_verifies_and_carries_the_hardening_options()
    {
        var unit = File.ReadAllText(Path.Combine(Root, "deploy", "conduit.service"));
        foreach (var option in new[] { "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "DynamicUser=yes",
                     "StateDirectory=matrix-conduit", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet=", "SystemCallFilter=@system-service" })
            Assert.Contains("\n" + option + "\n", unit);
        // verify needs the executable to exist: the unit is checked with ExecStart pointing at one that does.
        var dir = Directory.CreateTempSubdirectory("conduit-unit-").FullName;
        try
        {
            var copy = Path.Combine(dir, "conduit.service");
            File.WriteAllText(copy, unit.Replace("ExecStart=/usr/local/bin/conduit", "ExecStart=/bin/true", StringComparison.Ordinal));
            if (await Run("systemd-analyze", ["verify", copy]) is not { } r) return;
            Assert.True(r.Code == 0 && r.Stderr.Trim().Length == 0, r.Stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("nginx.conf")]
    [InlineData("Caddyfile")]
    public void A_reverse_proxy_example_forwards_every_path_the_server_answers(string file)
    {
        var text = File.ReadAllText(Path.Combine(Root, "deploy", file));
        // (Prefix, exact): Caddy's "/p/*" is a prefix and "/p" an exact path; nginx's "location /p/" a prefix, "= /p" exact.
        var forwarded = file == "Caddyfile"
            ? Regex.Matches(text, @"reverse_proxy (/\S*) ").Select(m => m.Groups[1].Value.EndsWith('*') ? (m.Groups[1].Value.TrimEnd('*'), false) : (m.Groups[1].Value, true)).ToList()
            : Regex.Matches(text, @"location (?:~ \^/\(([^)]*)\)/|= (/\S*)|(/\S*))").SelectMany(m => m.Groups[1].Success
                ? m.Groups[1].Value.Split('|').Select(p => ("/" + p + "/", false))
                : m.Groups[2].Success ? [(m.Groups[2].Value, true)] : [(m.Groups[3].Value, false)]).ToList();
        Assert.Contains(("/_matrix/", false), forwarded);
        foreach (var template in RouteTable.All.SelectMany(RouteTable.Templates))
            Assert.True(forwarded.Any(f => f.Item2 ? template == f.Item1 : template.StartsWith(f.Item1, StringComparison.Ordinal)), $"{file} does not forward {template}");
    }
}
