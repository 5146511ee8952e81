using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.SamplesSupport;

/// <summary>
/// Finds Fashion-MNIST for the samples, tests and benchmarks and loads it with <see cref="FashionMnist.Load"/>:
/// the folder named by <see cref="DirectoryVariable"/>, Debian's package, or the subset shipped with the repository.
/// </summary>
public static class FashionMnistData
{
    /// <summary>The environment variable that names a folder holding the four IDX files.</summary>
    public const string DirectoryVariable = "HAZY_FASHION_MNIST_DIR";

    /// <summary>The folder of Debian's <c>dataset-fashion-mnist</c> package.</summary>
    public const string DebianDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The repository folder holding the shipped subset (2,000 train and 500 test images).</summary>
    public const string SubsetRelativePath = "samples/data/fashion-mnist-subset";

    private const int FullTrainCount = 60000;

    /// <summary>
    /// Loads the train and test splits from <see cref="FindDirectory"/>: the full data set when Debian's
    /// package is installed, otherwise the subset shipped with the repository.
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="maxTrainRows">When set, only the first <paramref name="maxTrainRows"/> training images are read.</param>
    /// <param name="maxTestRows">When set, only the first <paramref name="maxTestRows"/> test images are read.</param>
    /// <returns>The two splits and where they came from; deconstructs into <c>(train, test)</c>.</returns>
    /// <exception cref="DirectoryNotFoundException">No folder holds the files.</exception>
    public static FashionMnistSource LoadDefault(MLContext mlContext, int? maxTrainRows = null, int? maxTestRows = null)
    {
        var directory = FindDirectory() ?? throw new DirectoryNotFoundException(
            $"Fashion-MNIST was not found. Install Debian's package (apt-get install dataset-fashion-mnist, files in {DebianDirectory}), "
            + $"set {DirectoryVariable} to a folder holding the four IDX files, or run from a clone of the repository, which ships {SubsetRelativePath}.");

        var trainImages = ResolveFile(directory, "train-images-idx3-ubyte")!;
        var train = FashionMnist.Load(mlContext, trainImages, ResolveFile(directory, "train-labels-idx1-ubyte")!, maxTrainRows);
        var test = FashionMnist.Load(mlContext,
            ResolveFile(directory, "t10k-images-idx3-ubyte")!, ResolveFile(directory, "t10k-labels-idx1-ubyte")!, maxTestRows);
        return new FashionMnistSource(train, test, directory, DeclaredItemCount(trainImages) < FullTrainCount);
    }

    /// <summary>
    /// Finds a folder holding the four Fashion-MNIST IDX files (<c>train-images-idx3-ubyte</c>, <c>train-labels-idx1-ubyte</c>,
    /// <c>t10k-images-idx3-ubyte</c>, <c>t10k-labels-idx1-ubyte</c>, each with or without <c>.gz</c>).
    /// </summary>
    /// <remarks>
    /// Looks, in order, at the folder named by <see cref="DirectoryVariable"/>, at <see cref="DebianDirectory"/>, and at
    /// <see cref="SubsetRelativePath"/> in the ancestors of the application's directory and of the current directory.
    /// </remarks>
    /// <returns>The folder, or null when none holds the files.</returns>
    /// <exception cref="DirectoryNotFoundException"><see cref="DirectoryVariable"/> is set but its folder lacks the files.</exception>
    public static string? FindDirectory()
    {
        var fromVariable = RepositoryFolders.FromEnvironment(DirectoryVariable);
        if (fromVariable is not null)
        {
            return HasAllFiles(fromVariable) ? Path.GetFullPath(fromVariable) : throw new DirectoryNotFoundException(
                $"{DirectoryVariable} is '{fromVariable}', but that folder does not hold the four Fashion-MNIST IDX files.");
        }

        if (HasAllFiles(DebianDirectory))
        {
            return DebianDirectory;
        }

        var subset = RepositoryFolders.FindUpwards(SubsetRelativePath);
        return subset is not null && HasAllFiles(subset) ? subset : null;
    }

    private static bool HasAllFiles(string directory)
        => ResolveFile(directory, "train-images-idx3-ubyte") is not null
            && ResolveFile(directory, "train-labels-idx1-ubyte") is not null
            && ResolveFile(directory, "t10k-images-idx3-ubyte") is not null
            && ResolveFile(directory, "t10k-labels-idx1-ubyte") is not null;

    private static string? ResolveFile(string directory, string name)
    {
        var gz = Path.Combine(directory, name + ".gz");
        if (File.Exists(gz))
        {
            return gz;
        }

        var raw = Path.Combine(directory, name);
        return File.Exists(raw) ? raw : null;
    }

    /// <summary>The item count in an IDX header (big-endian, after the magic number); the file was already validated by the reader.</summary>
    private static int DeclaredItemCount(string path)
    {
        using var file = File.OpenRead(path);
        bool isGzip = file.ReadByte() == 0x1f && file.ReadByte() == 0x8b;
        file.Position = 0;
        using var stream = isGzip ? new GZipStream(file, CompressionMode.Decompress) : (Stream)file;
        Span<byte> header = stackalloc byte[8];
        stream.ReadExactly(header);
        return BinaryPrimitives.ReadInt32BigEndian(header[4..]);
    }
}

/// <summary>The Fashion-MNIST splits <see cref="FashionMnistData.LoadDefault"/> loaded, and where it found them.</summary>
/// <param name="Train">The training split (60,000 images in the full data set).</param>
/// <param name="Test">The test split (10,000 images in the full data set).</param>
/// <param name="Directory">The folder the IDX files were read from.</param>
/// <param name="IsSubset">True when the files hold fewer than the full data set's 60,000 training images,
/// as the subset shipped with the repository does.</param>
public sealed record FashionMnistSource(IDataView Train, IDataView Test, string Directory, bool IsSubset)
{
    /// <summary>Deconstructs into the two splits: <c>var (train, test) = FashionMnistData.LoadDefault(mlContext);</c>.</summary>
    /// <param name="train">The training split.</param>
    /// <param name="test">The test split.</param>
    public void Deconstruct(out IDataView train, out IDataView test)
    {
        train = Train;
        test = Test;
    }
}
