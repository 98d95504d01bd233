using Conduit.Edge;

namespace Conduit.Functional.Tests;

/// <summary>
/// Each service's README lists its column families with their key and value layouts; the declarations in code
/// (<c>XxxFamilies.All</c>) are the source. A layout documented in two places drifts, so the READMEs are checked here.
/// </summary>
public sealed class StorageLayoutTests
{
    static IEnumerable<(string Name, string Key, string Value)> ReadmeRows(string readme)
    {
        foreach (var line in File.ReadLines(readme))
        {
            // A family row: its first cell is one backticked family name ("| `rooms_pdus` | ...").
            if (!System.Text.RegularExpressions.Regex.IsMatch(line, @"^\| `[a-z0-9_]+` \|")) continue;
            // Cells are split on '|' not escaped as "\|".
            var cells = System.Text.RegularExpressions.Regex.Split(line.Trim().Trim('|'), @"(?<!\\)\|")
                .Select(c => c.Trim().Replace("\\|", "|")).ToArray();
            if (cells.Length == 3) yield return (cells[0].Trim('`'), cells[1], cells[2]);
        }
    }

    [Fact]
    public void Every_service_readme_lists_exactly_its_declared_column_families()
    {
        var problems = new List<string>();
        foreach (var module in ConduitHost.Modules)
        {
            var readme = Path.Combine(ServerFixture.RepoRoot(), "services", module.Service.ToString().ToLowerInvariant(), "README.md");
            var documented = ReadmeRows(readme).ToList();
            var declared = module.Families.Select(f => (Name: f.Name, Key: f.KeyLayout, Value: f.ValueLayout)).ToList();
            foreach (var row in declared.Except(documented)) problems.Add($"{module.Service}: declared but not in README as is: | `{row.Name}` | {row.Key} | {row.Value} |");
            foreach (var row in documented.Except(declared)) problems.Add($"{module.Service}: in README but not declared: | `{row.Name}` | {row.Key} | {row.Value} |");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }
}
