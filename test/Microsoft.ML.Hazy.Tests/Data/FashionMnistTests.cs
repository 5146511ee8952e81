using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.SamplesSupport;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Data;

[TestFixture]
public sealed class FashionMnistTests
{
    private const int Pixels = 28 * 28;
    private string _dir = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "hazy-idx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    [TestCase(true)]
    [TestCase(false)]
    public void LoadReadsPixelsOver255AndLabelsAsNamedKeys(bool gzip)
    {
        byte[] labels = [3, 0, 9];
        var (images, labelsPath) = WriteSplit("split", labels, gzip);

        var view = FashionMnist.Load(new MLContext(1), images, labelsPath);

        Assert.That(view.GetRowCount(), Is.EqualTo(3));
        var labelColumn = view.Schema["Label"];
        Assert.That(labelColumn.Type, Is.InstanceOf<KeyDataViewType>());
        Assert.That(((KeyDataViewType)labelColumn.Type).Count, Is.EqualTo(10));
        Assert.That(labelColumn.Type.RawType, Is.EqualTo(typeof(uint)));
        var featuresType = (VectorDataViewType)view.Schema["Features"].Type;
        Assert.That(featuresType.ItemType, Is.EqualTo(NumberDataViewType.Single));
        Assert.That(featuresType.Size, Is.EqualTo(Pixels));

        VBuffer<ReadOnlyMemory<char>> names = default;
        labelColumn.Annotations.GetValue("KeyValues", ref names);
        Assert.That(names.DenseValues().Select(n => n.ToString()), Is.EqualTo(FashionMnist.ClassNames));
        Assert.That(FashionMnist.ClassNames[0], Is.EqualTo("T-shirt/top"));
        Assert.That(FashionMnist.ClassNames[9], Is.EqualTo("Ankle boot"));

        var rows = ReadRows(view, rand: null);
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(new uint[] { 4, 1, 10 }));
        for (int i = 0; i < 3; i++)
        {
            var expected = Enumerable.Range(0, Pixels).Select(p => Pixel(i, p) / 255f);
            Assert.That(rows[i].Features, Is.EqualTo(expected), $"image {i}");
        }
    }

    [Test]
    public void KeyValuesAreUnderstoodByMapKeyToValue()
    {
        var (images, labels) = WriteSplit("split", [3, 0, 9], gzip: true);
        var mlContext = new MLContext(1);
        var view = FashionMnist.Load(mlContext, images, labels);

        var mapped = mlContext.Transforms.Conversion.MapKeyToValue("Name", "Label").Fit(view).Transform(view);

        var names = mapped.GetColumn<ReadOnlyMemory<char>>("Name").Select(n => n.ToString());
        Assert.That(names, Is.EqualTo(new[] { "Dress", "T-shirt/top", "Ankle boot" }));
    }

    [Test]
    public void MaxRowsReadsOnlyTheFirstRows()
    {
        var (images, labels) = WriteSplit("split", [3, 0, 9], gzip: true);

        var view = FashionMnist.Load(new MLContext(1), images, labels, maxRows: 2);

        Assert.That(view.GetRowCount(), Is.EqualTo(2));
        Assert.That(ReadRows(view, null).Select(r => r.Label), Is.EqualTo(new uint[] { 4, 1 }));
    }

    [Test]
    public void ShuffledCursorReturnsAPermutationOfAllRows()
    {
        var labels = Enumerable.Range(0, 50).Select(i => (byte)(i % 10)).ToArray();
        var (images, labelsPath) = WriteSplit("split", labels, gzip: false);
        var view = FashionMnist.Load(new MLContext(1), images, labelsPath);
        Assert.That(view.CanShuffle, Is.True);

        var rows = ReadRows(view, new Random(7));

        // Pixel 0 of image i is i, so it identifies the image; its label must travel with it.
        var imageIds = rows.Select(r => (int)Math.Round(r.Features[0] * 255f)).ToArray();
        Assert.That(imageIds, Is.EquivalentTo(Enumerable.Range(0, 50)));
        Assert.That(imageIds, Is.Not.Ordered);
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(imageIds.Select(i => (uint)(i % 10) + 1)));
        Assert.That(rows.Select(r => r.Id), Is.EqualTo(imageIds.Select(i => (ulong)i)));
        Assert.That(ReadRows(view, new Random(7)).Select(r => r.Id), Is.EqualTo(rows.Select(r => r.Id)), "same seed, same order");
    }

    [Test]
    public void BadMagicNumberNamesTheFileAndBothNumbers()
    {
        var (images, labels) = WriteSplit("split", [1, 2], gzip: true);

        // Swapped arguments: the label file where images are expected.
        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), labels, images));

        Assert.That(error!.Message, Does.Contain(labels).And.Contain("2051").And.Contain("2049"));
    }

    [Test]
    public void CountMismatchNamesBothFiles()
    {
        var (images, _) = WriteSplit("three", [1, 2, 3], gzip: true);
        var (_, labels) = WriteSplit("two", [1, 2], gzip: true);

        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), images, labels));

        Assert.That(error!.Message, Does.Contain(images).And.Contain(labels).And.Contain("3 images").And.Contain("2 labels"));
    }

    [Test]
    public void TruncatedFileIsReported()
    {
        var (images, labels) = WriteSplit("split", [1, 2], gzip: false);
        var bytes = File.ReadAllBytes(images);
        File.WriteAllBytes(images, bytes[..^100]);

        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), images, labels));

        Assert.That(error!.Message, Does.Contain(images).And.Contain("truncated"));
    }

    [TestCase(null)]
    [TestCase(1)]
    public void CorruptedPixelsUnderTheOriginalTrailerAreReported(int? maxRows)
    {
        var (images, labels) = WriteSplit("split", [1, 2], gzip: true);
        var original = File.ReadAllBytes(images);

        // One pixel of the first image changed, recompressed, with the intact data's trailer (CRC-32 and size):
        // the deflate stream is valid, so only the checksum can tell.
        var raw = Gunzip(original);
        raw[16 + 100] ^= 0x40;
        var corrupted = Gzip(raw);
        original.AsSpan(original.Length - 8).CopyTo(corrupted.AsSpan(corrupted.Length - 8));
        File.WriteAllBytes(images, corrupted);

        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), images, labels, maxRows));

        Assert.That(error!.Message, Does.Contain(images).And.Contain("CRC-32"));
    }

    [Test]
    public void WrongSizeInTheGzipTrailerIsReported()
    {
        var (images, labels) = WriteSplit("split", [1, 2], gzip: true);
        var bytes = File.ReadAllBytes(images);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(bytes.Length - 4), 16 + 3 * Pixels);
        File.WriteAllBytes(images, bytes);

        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), images, labels));

        Assert.That(error!.Message, Does.Contain(images).And.Contain($"{16 + 3 * Pixels}").And.Contain($"{16 + 2 * Pixels}"));
    }

    [Test]
    public void WrongImageSizeIsReported()
    {
        var path = Path.Combine(_dir, "small-images");
        var header = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, 2051);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), 1);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), 8);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), 8);
        File.WriteAllBytes(path, [.. header, .. new byte[64]]);
        var (_, labels) = WriteSplit("split", [1], gzip: false);

        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), path, labels));

        Assert.That(error!.Message, Does.Contain(path).And.Contain("28×28").And.Contain("8×8"));
    }

    [Test]
    public void LabelOutsideTheClassesIsReported()
    {
        var (images, labels) = WriteSplit("split", [1, 10], gzip: true);

        var error = Assert.Throws<InvalidDataException>(() => FashionMnist.Load(new MLContext(1), images, labels));

        Assert.That(error!.Message, Does.Contain(labels).And.Contain("item 1 is 10"));
    }

    [Test]
    [NonParallelizable]
    public void DirectoryVariableIsHonoured()
    {
        WriteSplit("train", [1, 2, 3], gzip: false, "train-images-idx3-ubyte", "train-labels-idx1-ubyte");
        WriteSplit("test", [4, 5], gzip: true, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
        var previous = Environment.GetEnvironmentVariable(FashionMnistData.DirectoryVariable);
        try
        {
            Environment.SetEnvironmentVariable(FashionMnistData.DirectoryVariable, _dir);
            var source = FashionMnistData.LoadDefault(new MLContext(1));
            var (train, test) = source;

            Assert.That(source.Directory, Is.EqualTo(Path.GetFullPath(_dir)));
            Assert.That(source.IsSubset, Is.True);
            Assert.That(train.GetRowCount(), Is.EqualTo(3));
            Assert.That(test.GetRowCount(), Is.EqualTo(2));

            Environment.SetEnvironmentVariable(FashionMnistData.DirectoryVariable, Path.Combine(_dir, "missing"));
            var error = Assert.Throws<DirectoryNotFoundException>(() => FashionMnistData.FindDirectory());
            Assert.That(error!.Message, Does.Contain(FashionMnistData.DirectoryVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(FashionMnistData.DirectoryVariable, previous);
        }
    }

    [Test]
    public void ShippedSubsetHas2000TrainAnd500TestImages()
    {
        var subset = RepositoryFolders.FindUpwards(FashionMnistData.SubsetRelativePath);
        Assert.That(subset, Is.Not.Null, $"{FashionMnistData.SubsetRelativePath} is part of the repository and must be found from the test directory.");
        var mlContext = new MLContext(1);

        var train = FashionMnist.Load(mlContext,
            Path.Combine(subset!, "train-images-idx3-ubyte.gz"), Path.Combine(subset!, "train-labels-idx1-ubyte.gz"));
        var test = FashionMnist.Load(mlContext,
            Path.Combine(subset!, "t10k-images-idx3-ubyte.gz"), Path.Combine(subset!, "t10k-labels-idx1-ubyte.gz"));

        Assert.That(train.GetRowCount(), Is.EqualTo(2000));
        Assert.That(test.GetRowCount(), Is.EqualTo(500));
        Assert.That(File.Exists(Path.Combine(subset!, "LICENSE")), Is.True);
        // The first labels of the original training file: ankle boot, T-shirt, T-shirt, dress, ...
        var keys = train.GetColumn<uint>("Label").ToArray();
        Assert.That(keys.Take(8), Is.EqualTo(new uint[] { 10, 1, 1, 4, 1, 3, 8, 3 }));
        Assert.That(keys.Distinct().Count(), Is.EqualTo(10));
        var features = test.GetColumn<float[]>("Features").First();
        Assert.That(features, Has.Length.EqualTo(Pixels));
        Assert.That(features, Has.All.InRange(0f, 1f));
        Assert.That(features.Max(), Is.EqualTo(1f).Within(0.2f), "an image uses most of the grey range");
    }

    [Test]
    public void DebianPackageHas60000TrainAnd10000TestImages()
    {
        var dir = FashionMnistData.DebianDirectory;
        var files = new[] { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" };
        if (!files.All(f => File.Exists(Path.Combine(dir, f))))
        {
            Assert.Ignore($"Fashion-MNIST is not installed in {dir} (apt-get install dataset-fashion-mnist); the full-data test is skipped.");
        }

        var mlContext = new MLContext(1);
        var train = FashionMnist.Load(mlContext, Path.Combine(dir, files[0]), Path.Combine(dir, files[1]));
        var test = FashionMnist.Load(mlContext, Path.Combine(dir, files[2]), Path.Combine(dir, files[3]));

        Assert.That(train.GetRowCount(), Is.EqualTo(60000));
        Assert.That(test.GetRowCount(), Is.EqualTo(10000));
        // The data set is balanced: 1,000 test images per class.
        var counts = test.GetColumn<uint>("Label").GroupBy(k => k).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(counts.Keys, Is.EquivalentTo(Enumerable.Range(1, 10).Select(k => (uint)k)));
        Assert.That(counts.Values, Has.All.EqualTo(1000));

        if (Environment.GetEnvironmentVariable(FashionMnistData.DirectoryVariable) is null)
        {
            var source = FashionMnistData.LoadDefault(mlContext, maxTrainRows: 100);
            Assert.That(source.Directory, Is.EqualTo(dir));
            Assert.That(source.IsSubset, Is.False);
            Assert.That(source.Train.GetRowCount(), Is.EqualTo(100));
            Assert.That(source.Test.GetRowCount(), Is.EqualTo(10000));
        }
    }

    private static byte Pixel(int image, int pixel) => (byte)((image + pixel * 7) % 256);

    private (string Images, string Labels) WriteSplit(string prefix, byte[] labels, bool gzip, string? imagesName = null, string? labelsName = null)
    {
        var suffix = gzip ? ".gz" : "";
        var images = Path.Combine(_dir, (imagesName ?? prefix + "-images") + suffix);
        var labelsPath = Path.Combine(_dir, (labelsName ?? prefix + "-labels") + suffix);

        var imageBytes = new byte[16 + labels.Length * Pixels];
        BinaryPrimitives.WriteInt32BigEndian(imageBytes, 2051);
        BinaryPrimitives.WriteInt32BigEndian(imageBytes.AsSpan(4), labels.Length);
        BinaryPrimitives.WriteInt32BigEndian(imageBytes.AsSpan(8), 28);
        BinaryPrimitives.WriteInt32BigEndian(imageBytes.AsSpan(12), 28);
        for (int i = 0; i < labels.Length; i++)
        {
            for (int p = 0; p < Pixels; p++)
            {
                imageBytes[16 + i * Pixels + p] = Pixel(i, p);
            }
        }

        var labelBytes = new byte[8 + labels.Length];
        BinaryPrimitives.WriteInt32BigEndian(labelBytes, 2049);
        BinaryPrimitives.WriteInt32BigEndian(labelBytes.AsSpan(4), labels.Length);
        labels.CopyTo(labelBytes, 8);

        Write(images, imageBytes, gzip);
        Write(labelsPath, labelBytes, gzip);
        return (images, labelsPath);
    }

    private static byte[] Gzip(byte[] bytes)
    {
        using var memory = new MemoryStream();
        using (var gzip = new GZipStream(memory, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(bytes);
        }

        return memory.ToArray();
    }

    private static byte[] Gunzip(byte[] bytes)
    {
        using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var memory = new MemoryStream();
        gzip.CopyTo(memory);
        return memory.ToArray();
    }

    private static void Write(string path, byte[] bytes, bool gzip)
    {
        using var file = File.Create(path);
        using var stream = gzip ? new GZipStream(file, CompressionLevel.Fastest) : (Stream)file;
        stream.Write(bytes);
    }

    private static List<(uint Label, float[] Features, ulong Id)> ReadRows(IDataView view, Random? rand)
    {
        var rows = new List<(uint, float[], ulong)>();
        using var cursor = view.GetRowCursor(view.Schema, rand);
        var label = cursor.GetGetter<uint>(view.Schema["Label"]);
        var features = cursor.GetGetter<VBuffer<float>>(view.Schema["Features"]);
        var id = cursor.GetIdGetter();
        uint l = 0;
        VBuffer<float> f = default;
        DataViewRowId rowId = default;
        while (cursor.MoveNext())
        {
            label(ref l);
            features(ref f);
            id(ref rowId);
            rows.Add((l, f.DenseValues().ToArray(), rowId.Low));
        }

        return rows;
    }
}
