using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>
/// A data view with one key column appended whose value for row i is <c>keys[i]</c> (1-based; 0 is missing) and whose key
/// values are <c>names</c>. Rows are matched by position, so it reads its source in order and cannot shuffle.
/// </summary>
internal sealed class AppendedKeyDataView : IDataView
{
    private readonly IDataView _source;
    private readonly uint[] _keys;
    private readonly int _index;

    public AppendedKeyDataView(IDataView source, string columnName, uint[] keys, string[] names)
    {
        _source = source;
        _keys = keys;
        var (type, annotations) = KeyValueAnnotations.Create(names);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(source.Schema);
        builder.AddColumn(columnName, type, annotations);
        Schema = builder.ToSchema();
        _index = Schema.Count - 1;
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema { get; }

    public long? GetRowCount() => _keys.Length;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToArray();
        var sourceColumns = needed.Where(c => c.Index < _index).Select(c => _source.Schema[c.Index]).ToArray();
        return new Cursor(this, _source.GetRowCursor(sourceColumns), needed.Any(c => c.Index == _index));
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        new[] { GetRowCursor(columnsNeeded, rand) };

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly AppendedKeyDataView _parent;
        private readonly DataViewRowCursor _input;
        private readonly bool _keyActive;

        public Cursor(AppendedKeyDataView parent, DataViewRowCursor input, bool keyActive)
        {
            _parent = parent;
            _input = input;
            _keyActive = keyActive;
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _input.Position;

        public override long Batch => 0;

        public override bool MoveNext()
        {
            if (!_input.MoveNext())
                return false;
            if (_input.Position >= _parent._keys.Length)
                throw new InvalidOperationException(
                    $"The data has more rows than the {_parent._keys.Length} the column '{_parent.Schema[_parent._index].Name}' was computed for.");
            return true;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index != _parent._index)
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            if (typeof(TValue) != typeof(uint))
                throw new InvalidOperationException($"Column '{column.Name}' is a key of UInt32, not {typeof(TValue).Name}.");
            ValueGetter<uint> getter = (ref uint value) => value = _parent._keys[_input.Position];
            return (ValueGetter<TValue>)(Delegate)getter;
        }

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index == _parent._index ? _keyActive : _input.IsColumnActive(_input.Schema[column.Index]);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                _input.Dispose();
            base.Dispose(disposing);
        }
    }
}
