using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.SamplesSupport;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Data;

[TestFixture]
public sealed class UcrTimeSeriesTests
{
    private const string Univariate = """
        # A comment, then the header.
        @problemName Tiny
        @timeStamps false
        @missing true
        @univariate true
        @equalLength true
        @seriesLength 4
        @classLabel true b a
        @data
        1,2,3,4:a

        0.5,?,-1e-3, 7 :b
        """;

    private const string Multivariate = """
        @problemName Multi
        @univariate false
        @dimensions 2
        @equalLength true
        @seriesLength 3
        @classLabel true x y
        @data
        1,2,3:10,20,30:x
        4,5,6:40,50,60:y
        """;

    private const string VariableLength = """
        @univariate false
        @dimensions 2
        @equalLength false
        @classLabel true 1 2
        @data
        1,2:3,4:1
        5,6,7:8,9,?:2
        """;

    [Test]
    public void UnivariateWithMissingValues()
    {
        var set = Parse(Univariate);

        Assert.That(set.Name, Is.EqualTo("Tiny"));
        Assert.That(set.ChannelCount, Is.EqualTo(1));
        Assert.That(set.Length, Is.EqualTo(4));
        Assert.That(set.IsEqualLength, Is.True);
        Assert.That(set.ClassLabels, Is.EqualTo(new[] { "b", "a" }));
        Assert.That(set.Labels, Is.EqualTo(new[] { "a", "b" }));
        Assert.That(set.Series[0].ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
        Assert.That(set.Series[1].ToArray(), Is.EqualTo(new[] { 0.5f, float.NaN, -1e-3f, 7f }));

        var view = set.ToDataView(new MLContext(1));
        Assert.That(((VectorDataViewType)view.Schema["Features"].Type).Size, Is.EqualTo(4));
        // Keys follow the header's order: "b" is key 1, "a" key 2.
        Assert.That(view.GetColumn<uint>("Label"), Is.EqualTo(new uint[] { 2, 1 }));
        VBuffer<ReadOnlyMemory<char>> names = default;
        view.Schema["Label"].Annotations.GetValue("KeyValues", ref names);
        Assert.That(names.DenseValues().Select(n => n.ToString()), Is.EqualTo(new[] { "b", "a" }));
    }

    [Test]
    public void MultivariateIsTimeMajor()
    {
        var set = Parse(Multivariate);

        Assert.That(set.ChannelCount, Is.EqualTo(2));
        Assert.That(set.Length, Is.EqualTo(3));
        Assert.That(set.Series[0].ToArray(), Is.EqualTo(new[] { 1f, 10f, 2f, 20f, 3f, 30f }));
        Assert.That(set.Series[1].ToArray(), Is.EqualTo(new[] { 4f, 40f, 5f, 50f, 6f, 60f }));

        var view = set.ToDataView(new MLContext(1));
        var featuresType = (VectorDataViewType)view.Schema["Features"].Type;
        Assert.That(featuresType.Size, Is.EqualTo(6));
        var features = view.GetColumn<float[]>("Features").ToArray();
        Assert.That(features[1], Is.EqualTo(new[] { 4f, 40f, 5f, 50f, 6f, 60f }));
        Assert.That(view.GetColumn<int>("Length"), Is.EqualTo(new[] { 3, 3 }));
    }

    [Test]
    public void VariableLengthGivesVariableSizeVectors()
    {
        var set = Parse(VariableLength, "folder/vl.ts");

        Assert.That(set.Name, Is.EqualTo("vl"), "without @problemName the file name is used");
        Assert.That(set.IsEqualLength, Is.False);
        Assert.That(set.Length, Is.EqualTo(3));
        Assert.That(set.Lengths, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(set.Labels, Is.EqualTo(new[] { "1", "2" }));

        var view = set.ToDataView(new MLContext(1));
        var featuresType = (VectorDataViewType)view.Schema["Features"].Type;
        Assert.That(featuresType.IsKnownSize, Is.False);
        var features = view.GetColumn<float[]>("Features").ToArray();
        Assert.That(features[0], Is.EqualTo(new[] { 1f, 3f, 2f, 4f }));
        Assert.That(features[1], Is.EqualTo(new[] { 5f, 8f, 6f, 9f, 7f, float.NaN }));
        Assert.That(view.GetColumn<int>("Length"), Is.EqualTo(new[] { 2, 3 }));
        Assert.That(view.GetColumn<uint>("Label"), Is.EqualTo(new uint[] { 1, 2 }));
    }

    [Test]
    public void DataViewShufflesWithoutSeparatingColumns()
    {
        var set = Parse(VariableLength);
        var view = set.ToDataView(new MLContext(1));

        using var cursor = view.GetRowCursor(view.Schema, new Random(3));
        var length = cursor.GetGetter<int>(view.Schema["Length"]);
        var features = cursor.GetGetter<VBuffer<float>>(view.Schema["Features"]);
        var seen = new List<int>();
        int l = 0;
        VBuffer<float> f = default;
        while (cursor.MoveNext())
        {
            length(ref l);
            features(ref f);
            Assert.That(f.Length, Is.EqualTo(l * 2));
            seen.Add(l);
        }

        Assert.That(seen, Is.EquivalentTo(new[] { 2, 3 }));
    }

    private static readonly object[] _malformed =
    [
        new object[] { "1,2:x", 7, "1 channels but 2" },
        new object[] { "1,2:3,4:5,6:x", 7, "3 channels but 2" },
        new object[] { "1,2:3:x", 7, "channel 2 has 1 values but channel 1 has 2" },
        new object[] { "1,2:3,4:z", 7, "unknown class label 'z'" },
        new object[] { "1,two:3,4:x", 7, "'two' at channel 1, time step 2" },
        new object[] { "1,2,3", 7, "no ':'" },
        new object[] { "1,,3:4,5,6:x", 7, "'' at channel 1, time step 2" },
    ];

    [TestCaseSource(nameof(_malformed))]
    public void MalformedCaseNamesFileAndLine(string dataLine, int line, string fragment)
    {
        var text = $"""
            @problemName Bad
            @univariate false
            @dimensions 2
            @classLabel true x y
            @data
            1,2:3,4:y
            {dataLine}
            """;

        var error = Assert.Throws<InvalidDataException>(() => Parse(text, "bad.ts"));

        Assert.That(error!.Message, Does.StartWith($"bad.ts, line {line}:").And.Contain(fragment));
    }

    [Test]
    public void DeclaredEqualLengthIsChecked()
    {
        var wrongDeclared = "@univariate true\n@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n";
        var error = Assert.Throws<InvalidDataException>(() => Parse(wrongDeclared, "len.ts"));
        Assert.That(error!.Message, Does.StartWith("len.ts, line 7:").And.Contain("@seriesLength 3"));

        var unequal = "@univariate true\n@equalLength true\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n";
        error = Assert.Throws<InvalidDataException>(() => Parse(unequal, "len.ts"));
        Assert.That(error!.Message, Does.StartWith("len.ts, line 6:").And.Contain("equal length"));
    }

    [TestCase("@univariate true\n1,2:a\n", "line 2", "before @data")]
    [TestCase("@univariate true\n@data\n1,2:a\n", "line 2", "@classLabel")]
    [TestCase("@classLabel false\n@data\n", "line 1", "no class labels")]
    [TestCase("@classLabel true a b a\n@data\n", "line 1", "declared twice")]
    [TestCase("@timeStamps true\n@classLabel true a\n@data\n", "line 1", "not supported")]
    [TestCase("@dimensions two\n@classLabel true a\n@data\n", "line 1", "positive integer")]
    [TestCase("@classLabel true a\n", "", "no @data")]
    public void MalformedHeaderIsReported(string text, string line, string fragment)
    {
        var error = Assert.Throws<InvalidDataException>(() => Parse(text, "head.ts"));

        Assert.That(error!.Message, Does.StartWith("head.ts").And.Contain(line).And.Contain(fragment));
    }

    [TestCase("NaN")]
    [TestCase("nan")]
    [TestCase("Infinity")]
    [TestCase("-INFINITY")]
    [TestCase("inf")]
    [TestCase("-inf")]
    [TestCase("1e60")]
    [TestCase("-1e60")]
    public void NonFiniteValueIsRejectedNamingFileAndLine(string token)
    {
        var path = Path.Combine(Path.GetTempPath(), $"hazy-ucr-{Guid.NewGuid():N}.ts");
        File.WriteAllText(path, $"@univariate true\n@classLabel true a\n@data\n1,2,3:a\n4,{token},6:a\n");
        try
        {
            var error = Assert.Throws<InvalidDataException>(() => UcrTimeSeries.Load(path));

            Assert.That(error!.Message, Does.StartWith($"{path}, line 5:").And.Contain($"'{token}'").And.Contain("'?'"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase("GunPoint", 50, 150, 150, 1, 2)]
    [TestCase("ItalyPowerDemand", 67, 1029, 24, 1, 2)]
    [TestCase("ArrowHead", 36, 175, 251, 1, 3)]
    [TestCase("BasicMotions", 40, 40, 100, 6, 4)]
    public void SharedEqualLengthSets(string name, int trainCount, int testCount, int length, int channels, int classes)
    {
        var (train, test) = UcrTimeSeries.LoadPair(SharedUcrDirectory(), name);

        Assert.That(train.Name, Is.EqualTo(name));
        Assert.That(train.Count, Is.EqualTo(trainCount));
        Assert.That(test.Count, Is.EqualTo(testCount));
        foreach (var set in new[] { train, test })
        {
            Assert.That(set.IsEqualLength, Is.True);
            Assert.That(set.Length, Is.EqualTo(length));
            Assert.That(set.ChannelCount, Is.EqualTo(channels));
            Assert.That(set.ClassLabels, Has.Count.EqualTo(classes));
            Assert.That(set.Lengths, Has.All.EqualTo(length));
            Assert.That(set.Series.SelectMany(s => s.ToArray()), Has.None.NaN, "the files declare @missing false");
        }

        Assert.That(train.Labels.Distinct(), Is.EquivalentTo(train.ClassLabels), "every class occurs in training");
        var view = test.ToDataView(new MLContext(1));
        Assert.That(view.GetRowCount(), Is.EqualTo(testCount));
        Assert.That(((VectorDataViewType)view.Schema["Features"].Type).Size, Is.EqualTo(length * channels));
    }

    [Test]
    public void SharedFirstCasesMatchTheFiles()
    {
        var directory = SharedUcrDirectory();

        var gunPoint = UcrTimeSeries.LoadPair(directory, "GunPoint").Train;
        Assert.That(gunPoint.Series[0].Span[0], Is.EqualTo(-0.6478854f));
        Assert.That(gunPoint.Labels[0], Is.EqualTo("2"));

        // Time-major: the first six values are the six channels at time step 0.
        var motions = UcrTimeSeries.LoadPair(directory, "BasicMotions").Train;
        Assert.That(motions.Series[0].Span[..6].ToArray(), Is.EqualTo(new[] { 0.079106f, 0.394032f, 0.551444f, 0.351565f, 0.02397f, 0.633883f }));
        Assert.That(motions.Labels[0], Is.EqualTo("Standing"));
        Assert.That(motions.ClassLabels, Is.EqualTo(new[] { "Standing", "Running", "Walking", "Badminton" }));
    }

    [Test]
    public void SharedJapaneseVowelsIsVariableLength()
    {
        var (train, test) = UcrTimeSeries.LoadPair(SharedUcrDirectory(), "JapaneseVowels");

        Assert.That(train.Count, Is.EqualTo(270));
        Assert.That(test.Count, Is.EqualTo(370));
        foreach (var set in new[] { train, test })
        {
            Assert.That(set.IsEqualLength, Is.False);
            Assert.That(set.ChannelCount, Is.EqualTo(12));
            Assert.That(set.ClassLabels, Has.Count.EqualTo(9));
            Assert.That(set.Lengths, Has.All.InRange(7, 29));
            Assert.That(set.Lengths.Distinct().Count(), Is.GreaterThan(1));
            Assert.That(set.Length, Is.EqualTo(set.Lengths.Max()));
            Assert.That(Enumerable.Range(0, set.Count).All(i => set.Series[i].Length == set.Lengths[i] * 12), Is.True);
        }

        Assert.That(train.Lengths[0], Is.EqualTo(20));
        Assert.That(train.Series[0].Span[0], Is.EqualTo(1.860936f));
        Assert.That(train.Series[0].Span[1], Is.EqualTo(-0.207383f), "channel 2 at time step 0");
        Assert.That(train.Series[0].Span[12], Is.EqualTo(1.891651f), "channel 1 at time step 1");

        var view = train.ToDataView(new MLContext(1));
        var lengths = view.GetColumn<int>("Length").ToArray();
        var features = view.GetColumn<float[]>("Features").ToArray();
        Assert.That(features.Select(f => f.Length), Is.EqualTo(lengths.Select(l => l * 12)));
    }

    [Test]
    [NonParallelizable]
    public void DataDirectoryVariableIsHonoured()
    {
        var root = Path.Combine(Path.GetTempPath(), "hazy-data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "ucr"));
        var previous = Environment.GetEnvironmentVariable(UcrData.DataDirectoryVariable);
        try
        {
            Environment.SetEnvironmentVariable(UcrData.DataDirectoryVariable, root);
            Assert.That(UcrData.FindSharedDataDirectory(), Is.EqualTo(Path.Combine(root, "ucr")));

            Environment.SetEnvironmentVariable(UcrData.DataDirectoryVariable, Path.Combine(root, "ucr"));
            var error = Assert.Throws<DirectoryNotFoundException>(() => UcrData.FindSharedDataDirectory());
            Assert.That(error!.Message, Does.Contain(UcrData.DataDirectoryVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(UcrData.DataDirectoryVariable, previous);
            Directory.Delete(root, recursive: true);
        }
    }

    private static UcrDataSet Parse(string text, string source = "test.ts")
        => UcrTimeSeries.Load(new StringReader(text), source);

    private static string SharedUcrDirectory()
    {
        var directory = UcrData.FindSharedDataDirectory();
        if (directory is null)
        {
            Assert.Ignore("The shared UCR data (../shared/data/ucr beside the repository, or $HAZY_DATA_DIR/ucr) is absent; real-data test skipped.");
        }

        return directory!;
    }
}
