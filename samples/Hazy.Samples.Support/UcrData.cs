namespace Microsoft.ML.Hazy.SamplesSupport;

/// <summary>Finds the shared UCR/UEA time-series folder that <see cref="Hazy.Data.UcrTimeSeries.LoadPair"/> reads.</summary>
public static class UcrData
{
    /// <summary>The environment variable that names the shared <c>data</c> folder holding <c>ucr/</c>.</summary>
    public const string DataDirectoryVariable = "HAZY_DATA_DIR";

    /// <summary>
    /// Finds the UCR folder of the shared data sets: <c>$HAZY_DATA_DIR/ucr</c> when that variable is set, otherwise
    /// the first <c>shared/data/ucr</c> in the ancestors of the application's directory and of the current directory
    /// (a repository at <c>/work/main</c> finds <c>/work/shared/data/ucr</c>).
    /// </summary>
    /// <returns>The <c>ucr</c> folder, or null when there is none.</returns>
    /// <exception cref="DirectoryNotFoundException"><see cref="DataDirectoryVariable"/> is set but has no <c>ucr</c> folder.</exception>
    public static string? FindSharedDataDirectory()
    {
        var fromVariable = RepositoryFolders.FromEnvironment(DataDirectoryVariable);
        if (fromVariable is not null)
        {
            var ucr = Path.GetFullPath(Path.Combine(fromVariable, "ucr"));
            return Directory.Exists(ucr) ? ucr : throw new DirectoryNotFoundException(
                $"{DataDirectoryVariable} is '{fromVariable}', but '{ucr}' does not exist.");
        }

        return RepositoryFolders.FindUpwards(Path.Combine("shared", "data", "ucr"));
    }
}
