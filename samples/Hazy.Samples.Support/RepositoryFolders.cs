namespace Microsoft.ML.Hazy.SamplesSupport;

/// <summary>Finds data folders that live beside or inside the repository rather than in the package.</summary>
public static class RepositoryFolders
{
    /// <summary>
    /// Walks up from the application's directory, then from the current directory, and returns the first
    /// <c>ancestor/<paramref name="relativePath"/></c> that exists, or null.
    /// </summary>
    /// <param name="relativePath">The folder to look for, relative to an ancestor.</param>
    /// <returns>The full path of the folder, or null.</returns>
    public static string? FindUpwards(string relativePath)
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, relativePath);
                if (Directory.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    /// <summary>The value of an environment variable naming a folder, or null when unset or blank.</summary>
    /// <param name="variable">The environment variable.</param>
    /// <returns>Its value, or null.</returns>
    public static string? FromEnvironment(string variable)
    {
        var value = Environment.GetEnvironmentVariable(variable);
        return string.IsNullOrWhiteSpace(value) ? null : value;
    }
}
