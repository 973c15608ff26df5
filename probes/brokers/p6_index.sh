#!/bin/sh
# Probe 6a: indexes on the record table of a broker db. usage: p6_index.sh DB
echo "== .indexes record"; sqlite3 "$1" '.indexes record'
echo "== schema of record + its indexes"; sqlite3 "$1" "select sql from sqlite_master where tbl_name='record'"
